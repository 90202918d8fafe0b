"""Users and their API tokens."""

from modelyard.server.services.users.removal import (
    UserBusy,
    delete_user,
    get_user_ref,
    user_work,
)
from modelyard.server.services.users.service import (
    bootstrap_admin,
    create_token,
    create_user,
    get_user,
    list_tokens,
    list_users,
    revoke_token,
)

__all__ = [
    "UserBusy",
    "delete_user",
    "get_user_ref",
    "user_work",
    "bootstrap_admin",
    "create_token",
    "create_user",
    "get_user",
    "list_tokens",
    "list_users",
    "revoke_token",
]
