"""LocalProcessExecutor: each replica is a process group on this machine.

Per replica:
- `python -S -I .../executors/wrapper.py --exit-file <replica_dir>/exit_code -- argv...` (a
  stdlib-only launcher that starts in a few ms of CPU and records the exit code) started with start_new_session=True, so the wrapper leads a new session and process group that
  holds the replica's whole process tree (cancel signals the group);
- cwd as given (the replica dir by default), stdin /dev/null, stdout+stderr appended to the log;
- `<replica_dir>/launch.json` = {pid, pid_start_time, attempt} written right after the fork, so a
  replica started by a server that died before it could record the pid can still be found.

Endings are noticed without polling: a thread waits on each child (or, for replicas re-attached
after a restart, which are no longer our children, on a pidfd) and calls notify(). The exit code
comes from the child (own children) or from the exit_code file the wrapper writes."""

from __future__ import annotations

import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from . import limits, sandbox
from .base import Executor, ReplicaHandle, ReplicaLaunch, ReplicaStatus, describe_exit

log = logging.getLogger(__name__)

def _read_child_pid(fd: int, proc: subprocess.Popen, log_path: Path, timeout_s: float = 15.0) -> int:
    """The pid of a sandbox's first process, from bwrap's --info-fd JSON."""
    buf = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            chunk = os.read(fd, 4096)
            buf += chunk
            try:
                return int(json.loads(buf)["child-pid"])
            except (ValueError, KeyError):
                if not chunk:
                    break
        elif proc.poll() is not None:
            break
    try:
        tail = log_path.read_bytes()[-400:].decode(errors="replace").strip().splitlines()[-1]
    except (OSError, IndexError):
        tail = "see its log"
    raise sandbox.SandboxError(f"the replica's sandbox did not start: {tail}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


# psutil derives create_time from the boot time, which the kernel may report a second apart in two
# processes; a pid reused within a second of the first start is not a realistic case.
START_TIME_TOLERANCE_S = 1.0
WRAPPER = str(Path(__file__).with_name("wrapper.py"))


def read_exit_code(replica_dir: str | Path) -> int | None:
    try:
        return int((Path(replica_dir) / "exit_code").read_text().strip())
    except (OSError, ValueError):
        return None


def same_process(pid: int | None, start_time: float | None) -> psutil.Process | None:
    """The live process with this pid and start time (not a zombie), else None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if start_time is not None and abs(proc.create_time() - start_time) > START_TIME_TOLERANCE_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


class LocalProcessExecutor(Executor):
    name = "local"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._children: dict[int, subprocess.Popen] = {}  # pid -> Popen (our own children)
        self._ended: dict[tuple[int, float | None], ReplicaStatus] = {}  # how own children ended (poll is idempotent)
        self._watched: set[int] = set()  # pids with a watcher thread
        self._cores = limits.CorePicker()
        self._held: dict[int, dict] = {}  # pid -> {"cores", "cgroups", "memory_bytes"} of a live replica

    # --- submit -----------------------------------------------------------------------------
    def submit(self, launches: list[ReplicaLaunch]) -> list[ReplicaHandle]:
        handles: list[ReplicaHandle] = []
        # (job, attempt) -> descriptors of the user and network namespaces its replicas share; held
        # until all are started (each child holds its own copies, which keep the namespaces alive)
        net_of: dict[tuple[str, int], tuple[int, int]] = {}
        try:
            for ln in launches:
                handles.append(self._start_one(ln, net_of))
        except BaseException:
            self.cancel(handles, force=True)
            raise
        finally:
            for fds in net_of.values():
                for fd in fds:
                    os.close(fd)
        return handles

    def _limit_opts(self, ln: ReplicaLaunch, held: dict) -> list[str]:
        """The wrapper's options that enforce a sandboxed replica's allocation (recorded in held)."""
        sb = ln.sandbox
        assert sb is not None
        opts = ["--reap"]
        if sb.cpus:
            held["cores"] = self._cores.take(math.ceil(sb.cpus))
            opts += ["--cpus", ",".join(map(str, held["cores"]))]
        plan = limits.create(f"{ln.job_id}-{ln.attempt}-{ln.name}", memory_bytes=sb.memory_bytes,
                             max_processes=sb.max_processes)
        if plan is not None:
            held["cgroups"] = plan.dirs
            opts += [x for d in plan.dirs for x in ("--cgroup", d)]
        held["memory_bytes"] = sb.memory_bytes
        if sb.memory_bytes and not limits.enforces_memory(plan):
            opts += ["--rlimit-as", str(sb.memory_bytes)]
            held["rlimit_as"] = True
        if sb.max_open_files:
            opts += ["--nofile", str(sb.max_open_files)]
        return opts

    def _start_one(self, ln: ReplicaLaunch, net_of: dict[tuple[str, int], tuple[int, int]] | None = None
                   ) -> ReplicaHandle:
        rdir = Path(ln.replica_dir)
        rdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in ("exit_code", "exit_code.tmp", "launch.json"):
            (rdir / stale).unlink(missing_ok=True)
        Path(ln.cwd).mkdir(parents=True, exist_ok=True)
        net_of = {} if net_of is None else net_of
        held: dict = {"cores": [], "cgroups": [], "memory_bytes": None, "rlimit_as": False}
        opts = ["--exit-file", str(rdir / "exit_code")]
        sb, key = ln.sandbox, (ln.job_id, ln.attempt)
        child_fds: list[int] = []  # our descriptors the child inherits (closed here once it started)
        shared: tuple[int, ...] = ()  # the job's shared namespaces (closed by submit)
        proc: subprocess.Popen | None = None
        info = block = None  # our ends of the first shared-network replica's info and block pipes
        try:
            if sb is None:
                cmd = ln.argv
            else:
                opts += self._limit_opts(ln, held)
                join = net_of.get(key) if sb.network == "job" else None
                if sb.network == "job" and join is None:  # the first: opens the job's network namespace
                    info, info_w = os.pipe()
                    block_r, block = os.pipe()
                    child_fds += [info_w, block_r]
                    cmd = sandbox.bwrap_argv(sb, ln.argv, info_fd=info_w, block_fd=block_r)
                else:
                    cmd = sandbox.bwrap_argv(sb, ln.argv, join_net=join)
                    shared = join or ()
            argv = [sys.executable, "-S", "-I", WRAPPER, *opts, "--", *cmd]
            with open(ln.log_path, "ab", buffering=0) as logf:
                logf.write(f"==> modelyard: attempt {ln.attempt}, replica {ln.name} (rank {ln.rank})\n".encode())
                proc = subprocess.Popen(argv, cwd=str(ln.cwd), env=ln.env, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                        pass_fds=(*child_fds, *shared))
            for fd in child_fds:
                os.close(fd)
            child_fds = []
            if info is not None:
                init_pid = _read_child_pid(info, proc, Path(ln.log_path))
                # its namespaces exist and it waits on the block pipe: hold them, then let it run
                try:
                    net_of[key] = (os.open(f"/proc/{init_pid}/ns/user", os.O_RDONLY),
                                   os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY))
                finally:
                    os.write(block, b"1")
        except BaseException:
            if proc is not None:  # started but its sandbox did not come up: do not leave it behind
                _kill_group(proc)
            self._release(held)
            for fd in child_fds:
                os.close(fd)
            raise
        finally:
            for fd in (info, block):
                if fd is not None:
                    os.close(fd)
        try:
            start_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # exited already (or is a zombie we have not reaped)
            start_time = None
        (rdir / "launch.json").write_text(json.dumps({"pid": proc.pid, "pid_start_time": start_time,
                                                       "attempt": ln.attempt, "job_id": ln.job_id,
                                                       "sandboxed": ln.sandbox is not None, **held}))
        with self.lock:
            self._children[proc.pid] = proc
            self._held[proc.pid] = held
        self._watch_child(proc)
        return ReplicaHandle(name=ln.name, replica_dir=str(rdir), log_path=str(ln.log_path), pid=proc.pid,
                             pid_start_time=start_time)

    def _release(self, held: dict | None) -> None:
        if held:
            self._cores.give_back(held.get("cores") or [])
            limits.remove(held.get("cgroups") or [])

    def _ending(self, handle: ReplicaHandle, code: int | None) -> ReplicaStatus:
        """How a replica ended, in words, and the resources it held given back."""
        with self.lock:
            held = self._held.pop(handle.pid, None) if handle.pid else None
        ours = held is not None  # cores are given back once, by whoever popped them
        if held is None:
            held = self.read_launch_record(handle.replica_dir) or {}
        reason = describe_exit(code)
        mib = (held.get("memory_bytes") or 0) >> 20
        if code not in (0, None) and limits.oom_killed(held.get("cgroups") or []):
            reason = f"killed: memory limit ({mib} MiB) exceeded"
        elif code not in (0, None) and held.get("rlimit_as"):
            reason += f" (its address space was limited to {mib} MiB: it may have run out of memory)"
        if ours:
            self._cores.give_back(held.get("cores") or [])
        limits.remove(held.get("cgroups") or [])
        return ReplicaStatus(alive=False, exit_code=code, reason=reason)

    def _watch_child(self, proc: subprocess.Popen) -> None:
        def wait() -> None:
            try:
                proc.wait()
            finally:
                self.notify()

        threading.Thread(target=wait, name=f"replica-{proc.pid}", daemon=True).start()

    def _watch_pidfd(self, pid: int, start_time: float | None) -> None:
        """Wake the scheduler when a process that is not our child exits (Linux pidfd)."""
        with self.lock:
            if pid in self._watched or pid in self._children:
                return
            self._watched.add(pid)
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            with self.lock:
                self._watched.discard(pid)
            return  # the periodic pass notices the end instead
        if same_process(pid, start_time) is None:  # reused between the check and the open
            os.close(fd)
            with self.lock:
                self._watched.discard(pid)
            self.notify()
            return

        def wait() -> None:
            try:
                select.select([fd], [], [])
            finally:
                os.close(fd)
                with self.lock:
                    self._watched.discard(pid)
                self.notify()

        threading.Thread(target=wait, name=f"replica-fd-{pid}", daemon=True).start()

    # --- poll / recover ---------------------------------------------------------------------
    def poll(self, handle: ReplicaHandle) -> ReplicaStatus:
        key = (handle.pid, handle.pid_start_time)
        with self.lock:
            child = self._children.get(handle.pid) if handle.pid else None
            ended = self._ended.get(key)
        if ended is not None:
            return ended
        if child is not None:
            rc = child.poll()
            if rc is None:
                return ReplicaStatus(alive=True)
            code = read_exit_code(handle.replica_dir)
            # no code: the wrapper itself died without recording its child's (SIGKILL of the group)
            st = self._ending(handle, code if code is not None else rc)
            with self.lock:
                self._children.pop(handle.pid, None)
                self._ended[key] = st
                if len(self._ended) > 10000:  # old entries: their jobs were finished long ago
                    for k in list(self._ended)[:5000]:
                        del self._ended[k]
            return st
        if same_process(handle.pid, handle.pid_start_time) is not None:
            return ReplicaStatus(alive=True)
        code = read_exit_code(handle.replica_dir)
        if code is not None:
            return self._ending(handle, code)
        self._ending(handle, None)
        return ReplicaStatus(alive=False, exit_code=None,
                             reason="replica process vanished while the server was down (no exit code recorded)")

    def recover(self, handle: ReplicaHandle) -> bool:
        if same_process(handle.pid, handle.pid_start_time) is None:
            return False
        rec = self.read_launch_record(handle.replica_dir) or {}
        with self.lock:
            if handle.pid not in self._held and rec.get("pid") == handle.pid:
                self._held[handle.pid] = {k: rec.get(k) for k in ("cores", "cgroups", "memory_bytes", "rlimit_as")}
                self._cores.hold(rec.get("cores") or [])
        self._watch_pidfd(handle.pid, handle.pid_start_time)
        return True

    # --- cancel -----------------------------------------------------------------------------
    def cancel(self, handles: list[ReplicaHandle], *, force: bool = False) -> None:
        sig = signal.SIGKILL if force else signal.SIGTERM
        for h in handles:
            with self.lock:
                child = self._children.get(h.pid) if h.pid else None
            if child is not None:
                if child.poll() is not None:
                    continue
            elif same_process(h.pid, h.pid_start_time) is None:
                continue  # gone, or the pid now belongs to someone else: never signal it
            try:
                os.killpg(h.pid, sig)  # the wrapper leads the replica's process group
            except ProcessLookupError:
                pass
            except PermissionError:  # pragma: no cover
                log.warning("cannot signal process group %s", h.pid)

    # --- logs -------------------------------------------------------------------------------
    def logs(self, handle: ReplicaHandle, *, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        try:
            with open(handle.log_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(limit)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)
