"""One log follower for every replica log route (job replicas, service replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse


def log_response(locate: Callable[[], tuple[Any, Any, bool]], *, offset: int, follow: bool,
                 poll_s: float) -> StreamingResponse:
    """Stream a replica's log from `offset`. `locate()` answers (handle, executor, finished?) — a
    handle of None while nothing has started yet; with follow the stream stays open until finished."""

    async def stream() -> AsyncIterator[bytes]:
        # async, so a follower holds no worker thread while it waits; the short blocking reads
        # (a file chunk, a state) go through the thread pool
        pos = offset
        handle = ex = None
        while True:
            if handle is None:
                handle, ex, finished = await run_in_threadpool(locate)
                if handle is None:
                    if finished or not follow:
                        return
                    await asyncio.sleep(poll_s)
                    continue
            data, pos = await run_in_threadpool(ex.logs, handle, offset=pos, limit=256 * 1024)
            if data:
                yield data
                continue
            if not follow:
                return
            _h, _e, finished = await run_in_threadpool(locate)
            if finished:
                data, pos = await run_in_threadpool(ex.logs, handle, offset=pos, limit=1 << 30)
                if data:
                    yield data
                return
            await asyncio.sleep(poll_s)

    # no proxy buffering or caching: a follower sees each line as it is written
    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8",
                             headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"})
