"""`python -m modelyard.runtime.relay --uds SOCKET_PATH --port PORT -- ARGV...`

For runtimes that only listen on TCP inside the replica's sandbox (vLLM, user templates): starts ARGV
as a child in its own process group, accepts connections on the Unix socket and pipes each, both
ways, to 127.0.0.1:PORT (a half-close is passed on, bytes flow as they come, so streamed responses
are not buffered). SIGTERM / SIGINT are forwarded to the child's group; the relay exits with the
child's exit code (killed by signal N -> 128+N) and removes its socket file. Stdlib only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

CHUNK = 64 * 1024
KILL_AFTER_S = 30.0  # a child that ignores the forwarded signal this long gets SIGKILL


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m modelyard.runtime.relay",
                                description="Relay a Unix socket to a child's TCP port on 127.0.0.1.")
    p.add_argument("--uds", required=True, help="the Unix socket to listen on")
    p.add_argument("--port", required=True, type=int, help="the child's TCP port on 127.0.0.1")
    p.add_argument("child", nargs=argparse.REMAINDER, help="-- ARGV of the child")
    args = p.parse_args(argv)
    if args.child and args.child[0] == "--":
        args.child = args.child[1:]
    if not args.child:
        p.error("give the child's command after --")
    if not 0 < args.port < 65536:
        p.error("--port must be 1..65535")
    return args


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other side sees EOF, may still answer
    except (ConnectionError, OSError):
        writer.transport.abort()


async def _handle(port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        # the child is not listening (yet): a 502 tells an HTTP client why, instead of a bare reset
        with contextlib.suppress(OSError):
            client_w.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await client_w.drain()
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        for w in (up_w, client_w):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


async def _run(args: argparse.Namespace) -> int:
    sock = Path(args.uds)
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    child = await asyncio.create_subprocess_exec(*args.child, start_new_session=True)
    loop = asyncio.get_running_loop()
    killer: list[asyncio.TimerHandle] = []

    def forward(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        if not killer:
            killer.append(loop.call_later(KILL_AFTER_S, lambda: _kill(child.pid)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, forward, signum)
    server = await asyncio.start_unix_server(lambda r, w: _handle(args.port, r, w), path=str(sock))
    try:
        code = await child.wait()
    finally:
        server.close()
        sock.unlink(missing_ok=True)
        for k in killer:
            k.cancel()
        with contextlib.suppress(ProcessLookupError):  # whatever the child left in its group goes too
            os.killpg(child.pid, signal.SIGKILL)
    return 128 - code if code < 0 else code


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
