"""Helpers every domain uses: visibility/ownership, user paths, cross-domain in-use checks."""

from modelyard.server.db import paginate
from modelyard.server.services.common.access import (
    T,
    get_owned,
    get_visible,
    visible,
)
from modelyard.server.services.common.door import (
    Move,
    SideEffect,
    StaleState,
    StateDoor,
    effect,
    wake_scheduler,
)
from modelyard.server.services.common.filters import (
    enum_filter,
)
from modelyard.server.services.common.loops import (
    WakeableLoop,
)
from modelyard.server.services.common.paths import (
    clean_rel,
    public_root,
    resolve_in,
    resolve_user_path,
    user_root,
)
from modelyard.server.services.common.references import (
    Check,
    checker,
    ensure_unused,
    remove_checker,
)
from modelyard.server.services.common.refs import (
    AmbiguousReference,
    may_see,
    pick_by_name,
    resolve_owned_ref,
    resolve_ref,
)
from modelyard.server.services.common.txn import (
    after_commit,
)
from modelyard.server.services.common.wake import (
    add_waker,
    remove_waker,
    wake_after_commit,
    wake_all,
)

__all__ = [
    "AmbiguousReference",
    "may_see",
    "resolve_owned_ref",
    "resolve_ref",
    "Check",
    "Move",
    "SideEffect",
    "StaleState",
    "StateDoor",
    "T",
    "WakeableLoop",
    "add_waker",
    "after_commit",
    "checker",
    "clean_rel",
    "effect",
    "enum_filter",
    "ensure_unused",
    "get_owned",
    "get_visible",
    "paginate",
    "pick_by_name",
    "public_root",
    "remove_checker",
    "remove_waker",
    "resolve_in",
    "resolve_user_path",
    "user_root",
    "visible",
    "wake_after_commit",
    "wake_all",
    "wake_scheduler",
]
