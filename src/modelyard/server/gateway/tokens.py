"""Who is calling, without a database query per request: token SHA-256 -> principal, cached.

A miss goes through the platform's own check (server/auth.authenticate, in a worker thread);
the answer is kept for TTL_S, an unknown or revoked token for NEGATIVE_TTL_S. So a revoked token
or a disabled user keeps working on the proxy for at most TTL_S (the native API checks on every
request). Concurrent misses of one token share one look-up; at most MAX_ENTRIES tokens are kept
(the oldest go first)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from starlette.concurrency import run_in_threadpool

from modelyard.core.errors import Unauthorized
from modelyard.server.auth import Principal, authenticate, hash_token
from modelyard.server.db import session_scope

TTL_S = 10.0
NEGATIVE_TTL_S = 2.0
MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, sessions, *, ttl_s: float = TTL_S, negative_ttl_s: float = NEGATIVE_TTL_S,
                 max_entries: int = MAX_ENTRIES):
        self.sessions = sessions
        self.ttl_s, self.negative_ttl_s, self.max_entries = ttl_s, negative_ttl_s, max_entries
        # touched only on the event loop: no lock
        self._entries: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future] = {}

    async def principal(self, token: str | None) -> Principal | None:
        """The caller, or None for a missing, unknown, revoked or disabled token."""
        if not token:
            return None
        key = hash_token(token)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            principal = await run_in_threadpool(self._lookup, token)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved here, so an unshared failure is not logged as unhandled
            raise
        finally:
            self._pending.pop(key, None)
        fut.set_result(principal)
        self._store(key, principal)
        return principal

    def _lookup(self, token: str) -> Principal | None:
        with session_scope(self.sessions, readonly=True) as session:
            try:
                return authenticate(session, token)
            except Unauthorized:
                return None

    def _store(self, key: str, principal: Principal | None) -> None:
        ttl = self.ttl_s if principal is not None else self.negative_ttl_s
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic() + ttl, principal)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, token: str) -> None:
        self._entries.pop(hash_token(token), None)
