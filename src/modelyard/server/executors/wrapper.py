"""Replica launcher: `python -S -I wrapper.py --exit-file F [limits] -- cmd args...`.

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


# A sandboxed replica: a SIGTERM that reaches the group while bwrap is still setting up is lost
# for the job (its command is not forked yet, and the kernel drops signals from outside a PID
# namespace to that namespace's init). So a TERM within the start-up window is sent to the group
# again a little later, once or twice; a job cancelled after start-up gets exactly one.
_STARTED = [0.0]
STARTUP_WINDOW_S = 2.0
RESEND_AT_S = (0.3, 1.0)  # after the first TERM
_RESENDS: list = []  # the resends still to come; armed once per replica
_ARMED = [False]


def _term_during_startup(_signum, _frame):
    import time  # lazy, like every import here: the wrapper starts light (see above)

    if not _ARMED[0] and time.monotonic() - _STARTED[0] < STARTUP_WINDOW_S:
        _ARMED[0] = True
        _RESENDS.extend(RESEND_AT_S)
        _signal.setitimer(_signal.ITIMER_REAL, RESEND_AT_S[0])


def _resend(_signum, _frame):
    # a signal handler that raised would end the wrapper and orphan the job: never raise
    try:
        if not _RESENDS:
            return
        at = _RESENDS.pop(0)
        os.killpg(0, _signal.SIGTERM)  # reaches the job; we ignore it ourselves
        if _RESENDS:
            _signal.setitimer(_signal.ITIMER_REAL, max(0.01, _RESENDS[0] - at))
    except Exception:  # noqa: BLE001
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


def _subreaper():
    """Become a child subreaper: bwrap does not forward signals, so a SIGTERM to the group ends the
    outer bwrap at once while the job (same process group) handles it; its sandbox's init is then
    re-parented to us and we wait for the job's own ending."""
    import ctypes  # only for sandboxed replicas; costs a few ms

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _limits(opts):
    if "cpus" in opts:
        os.sched_setaffinity(0, [int(c) for c in opts["cpus"].split(",")])
    for d in opts.get("cgroup", []):  # move ourselves in: everything we start is charged there
        with open(os.path.join(d, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    names = {"rlimit-as": "RLIMIT_AS", "nproc": "RLIMIT_NPROC", "nofile": "RLIMIT_NOFILE"}
    wanted = [(names[k], int(opts[k])) for k in names if k in opts]
    if wanted:
        import resource  # lazy: only replicas with rlimits need it

        for name, value in wanted:  # never above the hard limit we were given
            which = getattr(resource, name)
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))


def _parse(opts):
    """--exit-file F (required), --reap, --cpus 0,1, --cgroup DIR (repeatable), --rlimit-as N,
    --nproc N, --nofile N."""
    out = {"cgroup": []}
    i = 0
    while i < len(opts):
        key = opts[i][2:] if opts[i].startswith("--") else None
        if key == "reap":
            out["reap"] = True
            i += 1
            continue
        if key not in ("exit-file", "cpus", "cgroup", "rlimit-as", "nproc", "nofile") or i + 1 >= len(opts):
            return None
        if key == "cgroup":
            out["cgroup"].append(opts[i + 1])
        else:
            out[key] = opts[i + 1]
        i += 2
    return out if "exit-file" in out else None


def _wait_all(pid):
    """The direct child's exit code, or, when it was killed by a signal while its sandbox's init
    (re-parented to us) lived on, the code of the last process to end (that init: the job's code)."""
    _, status = os.waitpid(pid, 0)  # retried after an (ignored) signal: PEP 475
    code = os.waitstatus_to_exitcode(status)
    while True:
        try:
            _, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return -(code - 128) if 128 < code <= 128 + 64 else code
        if code < 0:
            code = os.waitstatus_to_exitcode(status)
    # bwrap reports a child killed by signal N as 128+N (as shells do): read it back as the signal


def main(argv):
    usage = "usage: wrapper --exit-file FILE [--reap] [--cpus L] [--cgroup D] [--rlimit-as N] -- cmd [args...]\n"
    if "--" not in argv:
        sys.stderr.write(usage)
        return 2
    sep = argv.index("--")
    opts, cmd = _parse(argv[:sep]), argv[sep + 1:]
    if opts is None or not cmd:
        sys.stderr.write(usage)
        return 2
    exit_file = opts["exit-file"]
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, _ignore)
    try:
        if opts.get("reap"):
            import time  # lazy: only sandboxed replicas watch the start-up window

            _STARTED[0] = time.monotonic()
            _signal.signal(_signal.SIGTERM, _term_during_startup)
            _signal.signal(_signal.SIGALRM, _resend)
            _subreaper()
        _limits(opts)
        pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"modelyard: cannot start {cmd[0]!r}: {exc}\n")
        sys.stderr.flush()
        code = 127
    else:
        code = _wait_all(pid) if opts.get("reap") else os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    try:
        _write(exit_file, code)
    except OSError as exc:  # pragma: no cover - the job dir vanished
        sys.stderr.write(f"modelyard: cannot record exit code: {exc}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
