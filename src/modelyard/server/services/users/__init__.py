"""Users and their API tokens."""

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
    "bootstrap_admin",
    "create_token",
    "create_user",
    "get_user",
    "list_tokens",
    "list_users",
    "revoke_token",
]
