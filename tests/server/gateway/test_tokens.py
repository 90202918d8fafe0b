"""The gateway's token cache: one look-up per token per TTL (shared by concurrent misses),
unknown tokens cached for a shorter time, a bounded size."""

from __future__ import annotations

import asyncio
import time

from modelyard.server.gateway.tokens import TokenCache
from tests.harness import ADMIN_TOKEN


def _counting(cache: TokenCache) -> list[str]:
    calls: list[str] = []
    real = cache._lookup

    def lookup(token: str):
        calls.append(token)
        time.sleep(0.05)  # a slow database: concurrent misses overlap
        return real(token)

    cache._lookup = lookup
    return calls


def test_hits_misses_and_shared_lookups(app_client, alice):
    cache = TokenCache(app_client.app.state.ctx.sessions, ttl_s=0.5, negative_ttl_s=0.2)
    calls = _counting(cache)

    async def scenario():
        found = await asyncio.gather(*(cache.principal(alice.token) for _ in range(10)))
        assert {p.name for p in found} == {"alice"} and found[0].role == "user"
        assert len(calls) == 1  # ten concurrent misses, one look-up
        assert (await cache.principal(alice.token)).id == alice.id and len(calls) == 1
        assert await cache.principal("my_unknown") is None and await cache.principal("my_unknown") is None
        assert len(calls) == 2  # the unknown token is remembered too
        assert await cache.principal(None) is None and await cache.principal("") is None and len(calls) == 2
        await asyncio.sleep(0.25)
        assert await cache.principal("my_unknown") is None and len(calls) == 3  # negative entry expired
        assert (await cache.principal(alice.token)).name == "alice" and len(calls) == 3  # still fresh
        await asyncio.sleep(0.3)
        assert (await cache.principal(alice.token)).name == "alice" and len(calls) == 4

    asyncio.run(scenario())


def test_the_cache_is_bounded(app_client, make_user):
    cache = TokenCache(app_client.app.state.ctx.sessions, max_entries=3)
    tokens = [make_user().token for _ in range(4)] + [ADMIN_TOKEN]

    async def scenario():
        for t in tokens:
            assert await cache.principal(t) is not None
        assert len(cache._entries) == 3

    asyncio.run(scenario())
