"""The one door through which an entity's state changes, in the manner of Prefect's
`set_flow_run_state` and its orchestration policies.

    door = StateDoor(JOB, JobModel, event_kind="job.state_changed", effects=[...])
    door.move(session, job, "running", actor_id=..., reason=...)

`move()` checks the edge against the entity's `StateMachine` (core/states.py), compare-and-sets
the state column (so two actors — a loop, an API handler, a second server — can never both move
the same row from the same state), applies the column values the target state implies, runs the
door's named side effects in order (each may add to the event's payload), writes one event, all
inside the caller's transaction (the caller commits). A side effect is a small named function,
so the door's behaviour reads as a list: "stamp times", "release allocations", "wake the
scheduler".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from modelyard.core.errors import Conflict
from modelyard.core.states import StateMachine
from modelyard.server.orm.base import utcnow
from modelyard.server.services.common.wake import wake_after_commit
from modelyard.server.services.events import record


class StaleState(Conflict):
    """The row changed state under us (another actor moved it first)."""

    code = "state_changed"


@dataclass
class Move:
    """What a side effect sees: the row, the edge, who and why, and the event payload it may extend."""

    session: Session
    obj: Any
    frm: str
    to: str
    actor_id: str | None
    reason: str
    payload: dict[str, Any]
    door: StateDoor

    @property
    def terminal(self) -> bool:
        return self.to in self.door.machine.terminal


@dataclass(frozen=True)
class SideEffect:
    name: str
    run: Callable[[Move], None]
    when: Callable[[Move], bool] = lambda m: True


def effect(name: str, *, when: Callable[[Move], bool] = lambda m: True):
    def wrap(fn: Callable[[Move], None]) -> SideEffect:
        return SideEffect(name, fn, when)

    return wrap


wake_scheduler = SideEffect("wake the scheduler", lambda m: wake_after_commit(m.session))


@dataclass
class StateDoor:
    machine: StateMachine
    model: type
    event_kind: str
    # column values implied by the target state (timestamps, cleared errors...), from the move
    values: Callable[[Move], dict[str, Any]] = lambda m: {}
    effects: Iterable[SideEffect] = field(default_factory=list)
    state_attr: str = "state"
    label: Callable[[Any], str] = lambda obj: str(obj.id)

    def check(self, frm: str, to: str) -> None:
        self.machine.check(frm, to)

    def move(self, session: Session, obj: Any, to: str, *, actor_id: str | None = None, reason: str = "",
             data: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
             event_kind: str | None = None, message: str | None = None) -> Any:
        """`event_kind` and `message` override the door's event kind and the "from -> to" message
        for this one move (entities whose events name the outcome: "upload.completed")."""
        frm, to = str(getattr(obj, self.state_attr)), str(to)
        self.check(frm, to)
        mv = Move(session, obj, frm, to, actor_id, reason, {"from": frm, "to": to}, self)
        cols: dict[str, Any] = {self.state_attr: to, **self.values(mv), **(values or {})}
        if hasattr(self.model, "updated_at") and "updated_at" not in cols:
            cols["updated_at"] = utcnow()
        state_col = getattr(self.model, self.state_attr)
        pk = self.model.id
        res = session.execute(update(self.model).where(pk == obj.id, state_col == frm).values(**cols)
                              .execution_options(synchronize_session=False))
        if res.rowcount != 1:
            session.expire(obj, [self.state_attr])
            raise StaleState(f"{self.machine.entity} {self.label(obj)} is no longer {frm}",
                             details={"expected": frm, "to": to})
        for k, v in cols.items():
            set_committed_value(obj, k, v)
        for fx in self.effects:
            if fx.when(mv):
                fx.run(mv)
        if reason:
            mv.payload["reason"] = reason
        mv.payload.update(data or {})
        if message is None:
            message = f"{frm} -> {to}" + (f": {reason}" if reason else "")
        record(session, actor_id=actor_id, kind=event_kind or self.event_kind, object_type=self.machine.entity,
               object_id=str(obj.id), message=message,
               data=mv.payload)
        return obj
