"""Replica launcher: `python -S -I wrapper.py --exit-file F -- cmd args...`.

Runs cmd as its child, waits for it and writes the child's exit code (negative: killed by that
signal) to F, atomically. The server reads F to learn how a replica ended even when the replica
was not its child (after a server restart the replicas are re-parented to init).

The wrapper is the leader of the replica's process group. Cancellation signals the whole group,
so the child gets SIGTERM directly; the wrapper itself ignores SIGTERM/SIGINT/SIGHUP (with a
Python handler, which exec() resets, so the child keeps default dispositions) and stays to record
the code. SIGKILL to the group kills both: then no code is written and the server reports the
replica as killed.

It must start fast and light (it runs once per replica, and on a busy machine every millisecond
of CPU counts): started with -S -I by path, it imports nothing beyond what the interpreter has
already loaded (os, sys) and the C-level _signal module, and spawns with posix_spawn."""

import _signal
import os
import sys


def _ignore(_signum, _frame):
    pass


def _write(path, code):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{code}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def main(argv):
    if "--" not in argv:
        sys.stderr.write("usage: wrapper --exit-file FILE -- cmd [args...]\n")
        return 2
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    if len(opts) != 2 or opts[0] != "--exit-file" or not cmd:
        sys.stderr.write("usage: wrapper --exit-file FILE -- cmd [args...]\n")
        return 2
    exit_file = opts[1]
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, _ignore)
    try:
        pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    except OSError as exc:
        sys.stderr.write(f"modelyard: cannot start {cmd[0]!r}: {exc}\n")
        sys.stderr.flush()
        code = 127
    else:
        _, status = os.waitpid(pid, 0)  # retried after a (ignored) signal: PEP 475
        code = os.waitstatus_to_exitcode(status)
    try:
        _write(exit_file, code)
    except OSError as exc:  # pragma: no cover - the job dir vanished
        sys.stderr.write(f"modelyard: cannot record exit code: {exc}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
