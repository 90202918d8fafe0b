"""The one door through which an upload session's state changes (the table is core/states.UPLOAD).

    open ──► completing ──► completed
      │          │ └──────► open (a completion that could not finish: retry)
      └──────────┴────────► aborted | expired | failed

Column values per target: `error` on failed/expired (from the reason), `completed_at` on completed.
Side effect on every terminal state: the session's chunk rows go (the partial file is removed by
the caller after its commit). Each move writes one event; the service names it after the outcome
("upload.completed", "upload.failed", "upload.aborted", "upload.expired") as it always has."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from modelyard.core.states import UPLOAD
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import UploadChunkModel, UploadModel
from modelyard.server.services.common.door import Move, StaleState, StateDoor, effect

__all__ = ["UPLOAD_DOOR", "StaleState", "move_upload"]


def _upload_values(m: Move) -> dict[str, Any]:
    if m.to in ("failed", "expired"):
        return {"error": (m.reason or m.to)[:1024]}
    if m.to == "completed":
        return {"completed_at": utcnow()}
    return {}


@effect("drop chunk rows", when=lambda m: m.terminal)
def drop_chunks(m: Move) -> None:
    m.session.execute(delete(UploadChunkModel).where(UploadChunkModel.upload_id == m.obj.id))


UPLOAD_DOOR = StateDoor(UPLOAD, UploadModel, "upload.state_changed", values=_upload_values, effects=[drop_chunks])


def move_upload(session, up: UploadModel, to: str, *, reason: str = "", values: dict[str, Any] | None = None,
                actor_id: str | None = None, data: dict[str, Any] | None = None, event_kind: str | None = None,
                message: str | None = None) -> UploadModel:
    """Move an upload session to `to` inside the caller's transaction (the caller commits)."""
    return UPLOAD_DOOR.move(session, up, to, actor_id=actor_id, reason=reason, values=values, data=data,
                            event_kind=event_kind, message=message)
