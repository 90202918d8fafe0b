"""Every entity's states and the transitions allowed between them — the tables only.

A `StateMachine` is pure data plus an edge check; the server's door (`server/services/common/
door.py`) applies it with compare-and-set, named side effects and an event. Keeping the tables
here lets the runtime, SDK and CLI share the vocabulary without importing the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelyard.core.enums import JobState
from modelyard.core.errors import Conflict


class IllegalTransition(Conflict):
    code = "invalid_transition"


@dataclass(frozen=True)
class StateMachine:
    entity: str  # "job", "replica", "upload", ... (also the event's object_type)
    edges: Mapping[str, frozenset[str]]
    terminal: frozenset[str] = field(default_factory=frozenset)

    @property
    def states(self) -> frozenset[str]:
        return frozenset(self.edges)

    @property
    def active(self) -> frozenset[str]:
        return self.states - self.terminal

    def check(self, frm: str, to: str) -> None:
        frm, to = str(frm), str(to)
        if frm not in self.edges:
            raise IllegalTransition(f"{self.entity} has an unknown state {frm!r}",
                                    details={"from": frm, "to": to})
        if to not in self.edges[frm]:
            raise IllegalTransition(f"a {self.entity} cannot go from {frm} to {to}",
                                    details={"from": frm, "to": to, "allowed": sorted(self.edges[frm])})


def _machine(entity: str, edges: Mapping[str, Iterable[str]], terminal: Iterable[str]) -> StateMachine:
    table = {str(k): frozenset(str(v) for v in vs) for k, vs in edges.items()}
    for targets in list(table.values()):
        for t in targets:
            table.setdefault(t, frozenset())
    return StateMachine(entity, table, frozenset(str(t) for t in terminal))


J = JobState
#   pending ──► queued ──► starting ──► running ──► succeeded
#      │           │           │           ├──────► failed ────┐
#      └───────────┴───────────┴───────────┴──────► cancelled ─┴─► queued (resume: a new attempt)
JOB = _machine("job", {
    J.pending: {J.queued, J.failed, J.cancelled},
    J.queued: {J.starting, J.failed, J.cancelled},
    J.starting: {J.running, J.failed, J.cancelled},
    J.running: {J.succeeded, J.failed, J.cancelled},
    J.failed: {J.queued},
    J.cancelled: {J.queued},
    J.succeeded: set(),
}, terminal={J.succeeded, J.failed, J.cancelled})
JOB_TERMINAL = JOB.terminal

# A replica row is created pending with its job, placed (starting) when the job is admitted, and
# ends with the process; a resumed job re-uses its replica rows for the next attempt.
REPLICA = _machine("replica", {
    "pending": {"starting", "failed", "cancelled"},
    "starting": {"running", "succeeded", "failed", "cancelled"},
    "running": {"succeeded", "failed", "cancelled"},
    "succeeded": {"starting"},
    "failed": {"starting"},
    "cancelled": {"starting"},
}, terminal={"succeeded", "failed", "cancelled"})

# completing → open: a completion that could not finish (a placement conflict, an I/O error) re-opens
# the session for a retry; a hash mismatch or a quota refusal fails it. A session stuck completing
# past its expiry is expired like an open one.
UPLOAD = _machine("upload", {
    "open": {"completing", "aborted", "expired", "failed"},
    "completing": {"completed", "open", "failed", "aborted", "expired"},
    "completed": set(), "aborted": set(), "expired": set(), "failed": set(),
}, terminal={"completed", "aborted", "expired", "failed"})

SEARCH = _machine("search", {
    "running": {"succeeded", "failed", "cancelled"},
}, terminal={"succeeded", "failed", "cancelled"})

TRIAL = _machine("trial", {
    "running": {"complete", "pruned", "failed", "cancelled"},
}, terminal={"complete", "pruned", "failed", "cancelled"})

# An inference service (seed 000 §7). `saved` never ran; start moves saved/stopped/failed to
# deploying; the serving reconciler moves deploying/running/degraded by how many replicas are
# ready; stop drains every replica (stopping) and ends stopped once none is left.
#   saved ─► deploying ─► running ⇄ degraded ─► stopping ─► stopped ─► deploying
#                └──────────┴──────────┴─────► failed ─────────────────► deploying
SERVICE = _machine("service", {
    "saved": {"deploying", "stopped"},
    "deploying": {"running", "degraded", "failed", "stopping"},
    "running": {"degraded", "failed", "stopping", "deploying"},
    "degraded": {"running", "failed", "stopping", "deploying"},
    "stopping": {"stopped"},
    "stopped": {"deploying"},
    "failed": {"deploying", "stopping", "stopped"},
}, terminal={"stopped", "failed"})

# A service version: its replicas keep failing before ever becoming ready -> failed (no endless
# retry); starting the service again (or a changed version) makes it active again.
SERVICE_VERSION = _machine("service_version", {
    "active": {"failed"},
    "failed": {"active"},
}, terminal={"failed"})

# A service replica: a row per process ever started, never reused (a replacement is a new row).
# pending (its serve job queued) -> starting (job admitted, process starting, not ready yet) ->
# ready (its ready probe answered 200) -> draining (taken out of routing, its job cancelled) ->
# exited; failed when it died or never became ready.
SERVICE_REPLICA = _machine("service_replica", {
    "pending": {"starting", "draining", "failed", "exited"},
    "starting": {"ready", "draining", "failed", "exited"},
    "ready": {"draining", "failed", "exited"},
    "draining": {"exited", "failed"},
    "exited": set(), "failed": set(),
}, terminal={"exited", "failed"})

MACHINES: dict[str, StateMachine] = {m.entity: m for m in (JOB, REPLICA, UPLOAD, SEARCH, TRIAL, SERVICE,
                                                          SERVICE_VERSION, SERVICE_REPLICA)}
