"""Connections to the replicas, and which replica takes the next request.

`Upstreams`: one pooled httpx.AsyncClient per replica socket (HTTP over a Unix socket), made on
first use and closed once its replica has left the route table and nothing is in flight on it.
`Balancer`: a weighted choice of version by the versions' rates, then the ready replica with the
fewest requests in flight (ties in turn); a replica that refused a connection is passed over for
DOWN_S while another one is up. Both live on the event loop only, so they take no locks."""

from __future__ import annotations

import asyncio
import random
import time

import httpx

from modelyard.core.serving import RouteReplica, RouteVersion
from modelyard.server.gateway.table import Candidates, RouteTable

CONNECT_TIMEOUT_S = 5.0
# a generation may take minutes before its first byte (a long non-streamed answer)
READ_TIMEOUT_S = 600.0
DOWN_S = 5.0
# failures that happened before the replica saw the request: safe to send it to another one
RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout)


class Upstreams:
    def __init__(self) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._inflight: dict[str, int] = {}
        self._generation = -1
        self._closing: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self, socket_path: str) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # connections belong to the loop that opened them; an app driven from a new loop (a
            # test client without its lifespan) starts afresh rather than reusing dead ones
            self._loop, self._clients, self._inflight = loop, {}, {}
        c = self._clients.get(socket_path)
        if c is None:
            c = self._clients[socket_path] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=socket_path, retries=0),
                base_url="http://replica",
                timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, pool=None),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            )
        return c

    def acquire(self, socket_path: str) -> None:
        self._inflight[socket_path] = self._inflight.get(socket_path, 0) + 1

    def release(self, socket_path: str) -> None:
        n = self._inflight.get(socket_path, 1) - 1
        if n > 0:
            self._inflight[socket_path] = n
        else:
            self._inflight.pop(socket_path, None)

    def prune(self, table: RouteTable) -> None:
        """Close the clients of replicas gone from `table` (once per table generation; a client
        still streaming is closed by a later pass)."""
        if table.generation == self._generation:
            return
        busy = False
        for path in [p for p in self._clients if p not in table.sockets]:
            if self._inflight.get(path):
                busy = True
                continue
            task = asyncio.get_running_loop().create_task(self._clients.pop(path).aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if not busy:
            self._generation = table.generation

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class Balancer:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.outstanding: dict[str, int] = {}
        self._down_until: dict[str, float] = {}
        self._turn = 0

    def pick(self, cands: Candidates, exclude: set[str] = frozenset()) -> tuple[RouteVersion, RouteReplica] | None:
        groups = [(v, [r for r in rs if r.replica_id not in exclude]) for v, rs in cands.groups]
        groups = [(v, rs) for v, rs in groups if rs]
        if not groups:
            return None
        # versions at 0% take traffic only when no weighted version has a ready replica
        weighted = [g for g in groups if g[0].weight > 0]
        if len(weighted) == 1:
            version, replicas = weighted[0]
        elif weighted:
            version, replicas = self.rng.choices(weighted, weights=[g[0].weight for g in weighted])[0]
        else:
            version, replicas = self.rng.choice(groups)
        return version, self._least_outstanding(replicas)

    def _least_outstanding(self, replicas: list[RouteReplica]) -> RouteReplica:
        if len(replicas) == 1:
            return replicas[0]
        now = time.monotonic()
        up = [r for r in replicas if self._down_until.get(r.replica_id, 0.0) <= now] or replicas
        load = [self.outstanding.get(r.replica_id, 0) for r in up]
        least = min(load)
        ties = [r for r, n in zip(up, load, strict=True) if n == least]
        self._turn += 1
        return ties[self._turn % len(ties)]

    def acquire(self, replica: RouteReplica) -> None:
        self.outstanding[replica.replica_id] = self.outstanding.get(replica.replica_id, 0) + 1

    def release(self, replica: RouteReplica) -> None:
        n = self.outstanding.get(replica.replica_id, 1) - 1
        if n > 0:
            self.outstanding[replica.replica_id] = n
        else:
            self.outstanding.pop(replica.replica_id, None)

    def mark_down(self, replica: RouteReplica) -> None:
        now = time.monotonic()
        if len(self._down_until) > 1024:
            self._down_until = {k: t for k, t in self._down_until.items() if t > now}
        self._down_until[replica.replica_id] = now + DOWN_S
