"""Deleting a user (admin only).

What happens, and why: the account is CLOSED, not erased. Its row stays, disabled, renamed to
`<name>.deleted-<id8>` (so the name is free for a new account), and every token it has is
revoked, so nothing can act as it again. Everything it owns stays where it is: files, datasets,
models, images, finished jobs and searches. Other users' lineage may name its model and dataset
versions (a fine-tune of its public base model, say), and erasing them would leave that lineage
pointing at nothing; kept, an admin can still see, export or delete each object with the usual
per-object deletes, which refuse what lineage still needs.

Refused (409 `user_busy`, listing them) while the user has active jobs, running searches or
open uploads; `force=True` first cancels the searches and jobs (running ones get SIGTERM through
the usual cancel path) and aborts the uploads. An admin cannot delete itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict
from modelyard.server.auth import Principal
from modelyard.server.orm import ApiTokenModel, UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import UploadModel
from modelyard.server.orm.jobs import ACTIVE_STATES, JobModel
from modelyard.server.orm.searches import SearchModel
from modelyard.server.services import events
from modelyard.server.services.common.refs import resolve_ref

LIVE_UPLOADS = ("open", "completing")


class UserBusy(Conflict):
    code = "user_busy"


def get_user_ref(session: Session, ref: str, *, include_closed: bool = False) -> UserModel:
    """A user by id, id prefix or name (services/common/refs.py). Closed accounts answer 404."""
    where = None if include_closed else UserModel.disabled.is_(False)
    return resolve_ref(session, UserModel, ref, None, what="user", owned=False, where=where)


def user_work(session: Session, user_id: str) -> dict[str, list[dict[str, str]]]:
    """What the user has running: active jobs, running searches, open uploads."""
    jobs = session.execute(select(JobModel.id, JobModel.name, JobModel.state).where(
        JobModel.owner_id == user_id, JobModel.state.in_(ACTIVE_STATES))).all()
    searches = session.execute(select(SearchModel.id, SearchModel.name).where(
        SearchModel.owner_id == user_id, SearchModel.state == "running")).all()
    uploads = session.execute(select(UploadModel.id, UploadModel.path).where(
        UploadModel.owner_id == user_id, UploadModel.state.in_(LIVE_UPLOADS))).all()
    return {"jobs": [{"id": j.id, "name": j.name, "state": j.state} for j in jobs],
            "searches": [{"id": s.id, "name": s.name} for s in searches],
            "uploads": [{"id": u.id, "path": u.path} for u in uploads]}


def _stop_work(session: Session, ctx: Any, admin: Principal, work: dict) -> None:
    from modelyard.server.services import jobs, searches, uploads

    reason = "cancelled: the user's account is being deleted"
    for s in work["searches"]:
        searches.cancel_search(session, ctx, principal=admin, search_id=s["id"])
    for j in work["jobs"]:
        job = session.get(JobModel, j["id"])
        if job is not None and not job.cancel_requested_at and job.state in ACTIVE_STATES:
            jobs.cancel_job(session, ctx, principal=admin, job_id=j["id"], reason=reason)
    for u in work["uploads"]:
        up = session.get(UploadModel, u["id"])
        if up is not None and up.state in LIVE_UPLOADS:
            uploads.move_upload(session, up, "aborted", actor_id=admin.id, event_kind="upload.aborted",
                                message=f"aborted upload of {up.path}: {reason}",
                                data={"root": up.root, "path": up.path})
            uploads.partial_path(ctx.settings, up.id).unlink(missing_ok=True)
            uploads.forget(up.id)


def delete_user(session: Session, ctx: Any, *, admin: Principal, user_ref: str, force: bool = False) -> UserModel:
    user = get_user_ref(session, user_ref)
    if user.id == admin.id:
        raise BadRequest("an admin cannot delete its own account", code="cannot_delete_self")
    work = user_work(session, user.id)
    busy = sum(len(v) for v in work.values())
    if busy and not force:
        parts = [f"{len(v)} {k}" for k, v in work.items() if v]
        raise UserBusy(f"user {user.name} has {', '.join(parts)} still running; cancel them or delete with "
                       "force=true (cancels them first)", details=work)
    if busy:
        _stop_work(session, ctx, admin, work)
    now = utcnow()
    revoked = 0
    for tok in session.scalars(select(ApiTokenModel).where(ApiTokenModel.user_id == user.id,
                                                           ApiTokenModel.revoked_at.is_(None))):
        tok.revoked_at = now
        revoked += 1
    old_name = user.name
    user.name = f"{old_name}.deleted-{user.id[:8]}"[:64]
    user.disabled = True
    events.record(session, actor_id=admin.id, kind="user.deleted", object_type="user", object_id=user.id,
                  message=f"user {old_name} deleted (account closed; {revoked} tokens revoked; objects kept)",
                  data={"name": old_name, "forced": bool(busy), "cancelled": work if busy else {},
                        "tokens_revoked": revoked})
    session.flush()
    return user
