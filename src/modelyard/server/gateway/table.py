"""The route table: every service's ready replicas, held in memory so the proxy routes with no
database query.

`RouteRefresher` (a background component, server/background.py) reads
`services.serving.route_snapshot` every REFRESH_S and at once whenever a state door wakes the
loops (services/common/wake.py), builds an immutable `RouteTable` with its look-up indexes and
swaps it in with one attribute assignment; the proxy reads `gateway.table` once per request, with
no lock. The same thread flushes the proxy's invocation counts (`InvocationCounts`) through
`services.serving.record_invocations` every FLUSH_S.

The serving service is looked up by name when first needed: while it is not installed the table
stays empty (every model answers 404 model_not_found)."""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.serving import RouteEntry, RouteReplica, RouteVersion
from modelyard.server.db import session_scope
from modelyard.server.services.common.loops import WakeableLoop

log = logging.getLogger(__name__)

SERVING_MODULE = "modelyard.server.services.serving"
REFRESH_S = 1.0
FLUSH_S = 3.0


def _serving_function(name: str) -> Callable | None:
    try:
        mod = importlib.import_module(SERVING_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == SERVING_MODULE:
            return None
        raise
    return getattr(mod, name, None)


def load_route_snapshot(session) -> list[RouteEntry]:
    """The serving service's snapshot of every service and its ready replicas ([] without it)."""
    fn = _serving_function("route_snapshot")
    return list(fn(session)) if fn is not None else []


def record_invocations(session, counts: dict[str, tuple[int, int]]) -> bool:
    """Adds (calls, failures) per service id; False when there is no serving service to take them."""
    fn = _serving_function("record_invocations")
    if fn is None:
        return False
    fn(session, counts)
    return True


@dataclass(frozen=True)
class Candidates:
    """Where one request may go: versions (with their weights) and, per version, the ready
    replicas that answer the requested name."""

    entry: RouteEntry
    groups: tuple[tuple[RouteVersion, tuple[RouteReplica, ...]], ...]
    # the `model` to send upstream: None -> each replica's first served name (its base model)
    served_name: str | None = None


@dataclass(frozen=True)
class RouteTable:
    entries: tuple[RouteEntry, ...] = ()
    generation: int = 0
    by_name: dict[str, tuple[RouteEntry, ...]] = field(default_factory=dict)
    # served name (an adapter, a base model's name) -> the services whose replicas answer it
    by_served: dict[str, tuple[RouteEntry, ...]] = field(default_factory=dict)
    sockets: frozenset[str] = frozenset()

    @classmethod
    def build(cls, entries: list[RouteEntry], generation: int) -> RouteTable:
        by_name: dict[str, list[RouteEntry]] = {}
        by_served: dict[str, list[RouteEntry]] = {}
        sockets: set[str] = set()
        for e in entries:
            by_name.setdefault(e.name, []).append(e)
            served: set[str] = set()
            for v in e.versions:
                for r in v.replicas:
                    sockets.add(r.socket_path)
                    served.update(r.served_names)
            for name in served:
                by_served.setdefault(name, []).append(e)
        return cls(tuple(entries), generation, {k: tuple(v) for k, v in by_name.items()},
                   {k: tuple(v) for k, v in by_served.items()}, frozenset(sockets))

    def visible(self, entries: tuple[RouteEntry, ...], principal) -> list[RouteEntry]:
        """The caller's own first; an admin sees everyone's, nobody else sees another's."""
        own = [e for e in entries if e.owner_id == principal.id]
        if principal.is_admin:
            own += [e for e in entries if e.owner_id != principal.id]
        return own

    def service(self, name: str, principal) -> RouteEntry | None:
        found = self.visible(self.by_name.get(name, ()), principal)
        return found[0] if found else None

    def resolve(self, model: str, principal) -> Candidates | None:
        """`model` as a service name, `service:N` (that version) or a name a replica serves; None
        when the caller can see nothing by that name (404 either way: another user's service
        is indistinguishable from a missing one)."""
        entry = self.service(model, principal)
        if entry is not None:
            return Candidates(entry, tuple((v, tuple(v.replicas)) for v in entry.versions))
        name, sep, number = model.rpartition(":")
        if sep and number.isdigit():
            entry = self.service(name, principal)
            if entry is not None:
                versions = [v for v in entry.versions if v.number == int(number)]
                if not versions:
                    return None
                return Candidates(entry, tuple((v, tuple(v.replicas)) for v in versions))
        for entry in self.visible(self.by_served.get(model, ()), principal):
            groups = tuple((v, tuple(r for r in v.replicas if model in r.served_names)) for v in entry.versions)
            return Candidates(entry, tuple(g for g in groups if g[1]), served_name=model)
        return None

    def models_for(self, principal) -> list[tuple[str, RouteEntry]]:
        """(model id, service) for everything the caller may call: service names, service:N and
        the names their ready replicas serve."""
        out: list[tuple[str, RouteEntry]] = []
        seen: set[str] = set()
        for e in self.visible(self.entries, principal):
            if e.kind != "openai":
                continue
            names = [e.name] + [f"{e.name}:{v.number}" for v in e.versions]
            names += sorted({n for v in e.versions for r in v.replicas for n in r.served_names})
            for n in names:
                if n not in seen:
                    seen.add(n)
                    out.append((n, e))
        return out


class InvocationCounts:
    """Calls and failures per service id since the last flush. Bumped on the event loop, taken by
    the refresher's thread, hence the (uncontended, sub-microsecond) lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}

    def add(self, service_id: str, *, failed: bool) -> None:
        with self._lock:
            c = self._counts.get(service_id)
            if c is None:
                c = self._counts[service_id] = [0, 0]
            c[0] += 1
            if failed:
                c[1] += 1

    def take(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return {k: (v[0], v[1]) for k, v in counts.items()}

    def put_back(self, counts: dict[str, tuple[int, int]]) -> None:
        """A flush that failed: keep the counts for the next one."""
        with self._lock:
            for sid, (calls, failures) in counts.items():
                c = self._counts.setdefault(sid, [0, 0])
                c[0] += calls
                c[1] += failures


class RouteRefresher(WakeableLoop):
    """Refreshes the gateway's route table and flushes its invocation counts."""

    thread_name = "modelyard-gateway"

    def __init__(self, ctx: Any, gateway: Any):
        super().__init__(ctx)
        self.gateway = gateway
        self.interval_s = REFRESH_S
        self._last_flush = time.monotonic()
        self._missing_logged = False

    def step(self) -> None:
        try:
            self.refresh()
        finally:
            if time.monotonic() - self._last_flush >= FLUSH_S:
                self.flush()

    def refresh(self) -> None:
        with session_scope(self.ctx.sessions, readonly=True) as session:
            entries = load_route_snapshot(session)
        self.gateway.publish(entries)

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        counts = self.gateway.counts.take()
        if not counts:
            return
        try:
            with session_scope(self.ctx.sessions) as session:
                taken = record_invocations(session, counts)
        except Exception:
            # kept for the next flush, but only for services still routed: a deleted service's
            # counts must not make every later flush fail
            live = {e.service_id for e in self.gateway.table.entries}
            self.gateway.counts.put_back({k: v for k, v in counts.items() if k in live})
            raise
        if not taken and not self._missing_logged:
            self._missing_logged = True
            log.warning("gateway: no serving service to record invocation counts; they are dropped")

    def stop(self) -> None:
        super().stop()
        try:  # the last counts of a clean shutdown
            self.flush()
        except Exception:
            log.exception("gateway: final flush of invocation counts failed")
