"""The doors through which a search's and a trial's state change (tables: core/states.SEARCH, TRIAL).

    search: running ──► succeeded | failed | cancelled
    trial:  running ──► complete | pruned | failed | cancelled

Rows are created directly in their initial state, running. Column values per target: a search's
`finished_at` (and `error` from the reason when it fails); a trial's `finished_at` and `message`
(from the reason). What stopping a search does besides (cancelling its running trials' jobs, the
best trial, the `best` alias) stays in the driver; only the state write goes through here."""

from __future__ import annotations

from typing import Any

from modelyard.core.states import SEARCH, TRIAL
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.services.common.door import Move, StaleState, StateDoor

__all__ = ["SEARCH_DOOR", "StaleState", "TRIAL_DOOR", "move_search", "move_trial"]


def _search_values(m: Move) -> dict[str, Any]:
    vals: dict[str, Any] = {"finished_at": utcnow()}
    if m.to == "failed":
        vals["error"] = (m.reason or "failed")[:4000]
    return vals


def _trial_values(m: Move) -> dict[str, Any]:
    vals: dict[str, Any] = {"finished_at": utcnow()}
    if m.reason:
        vals["message"] = m.reason[:1024]
    return vals


SEARCH_DOOR = StateDoor(SEARCH, SearchModel, "search.state_changed", values=_search_values)
TRIAL_DOOR = StateDoor(TRIAL, SearchTrialModel, "trial.state_changed", values=_trial_values,
                       label=lambda t: f"{t.search_id}#{t.number}")


def move_search(session, search: SearchModel, to: str, *, reason: str = "", values: dict[str, Any] | None = None,
                actor_id: str | None = None, data: dict[str, Any] | None = None, event_kind: str | None = None,
                message: str | None = None) -> SearchModel:
    """Move a search to `to` inside the caller's transaction (the caller commits)."""
    return SEARCH_DOOR.move(session, search, to, actor_id=actor_id, reason=reason, values=values, data=data,
                            event_kind=event_kind, message=message)


def move_trial(session, trial: SearchTrialModel, to: str, *, reason: str = "", values: dict[str, Any] | None = None,
               actor_id: str | None = None, data: dict[str, Any] | None = None) -> SearchTrialModel:
    """Move a trial to `to` inside the caller's transaction (the caller commits)."""
    return TRIAL_DOOR.move(session, trial, to, actor_id=actor_id, reason=reason, values=values, data=data)
