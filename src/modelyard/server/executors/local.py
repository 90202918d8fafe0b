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
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from .base import Executor, ReplicaHandle, ReplicaLaunch, ReplicaStatus, describe_exit

log = logging.getLogger(__name__)

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

    # --- submit -----------------------------------------------------------------------------
    def submit(self, launches: list[ReplicaLaunch]) -> list[ReplicaHandle]:
        handles: list[ReplicaHandle] = []
        try:
            for ln in launches:
                handles.append(self._start_one(ln))
        except BaseException:
            self.cancel(handles, force=True)
            raise
        return handles

    def _start_one(self, ln: ReplicaLaunch) -> ReplicaHandle:
        rdir = Path(ln.replica_dir)
        rdir.mkdir(parents=True, exist_ok=True)
        for stale in ("exit_code", "exit_code.tmp", "launch.json"):
            (rdir / stale).unlink(missing_ok=True)
        Path(ln.cwd).mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-S", "-I", WRAPPER, "--exit-file", str(rdir / "exit_code"), "--", *ln.argv]
        with open(ln.log_path, "ab", buffering=0) as logf:
            logf.write(f"==> modelyard: attempt {ln.attempt}, replica {ln.name} (rank {ln.rank})\n".encode())
            proc = subprocess.Popen(argv, cwd=str(ln.cwd), env=ln.env, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        try:
            start_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # exited already (or is a zombie we have not reaped)
            start_time = None
        (rdir / "launch.json").write_text(json.dumps({"pid": proc.pid, "pid_start_time": start_time,
                                                       "attempt": ln.attempt, "job_id": ln.job_id}))
        with self.lock:
            self._children[proc.pid] = proc
        self._watch_child(proc)
        return ReplicaHandle(name=ln.name, replica_dir=str(rdir), log_path=str(ln.log_path), pid=proc.pid,
                             pid_start_time=start_time)

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
            if code is not None:
                st = ReplicaStatus(alive=False, exit_code=code, reason=describe_exit(code))
            else:  # the wrapper itself died without recording its child's code (SIGKILL of the group)
                st = ReplicaStatus(alive=False, exit_code=rc, reason=describe_exit(rc))
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
            return ReplicaStatus(alive=False, exit_code=code, reason=describe_exit(code))
        return ReplicaStatus(alive=False, exit_code=None,
                             reason="replica process vanished while the server was down (no exit code recorded)")

    def recover(self, handle: ReplicaHandle) -> bool:
        if same_process(handle.pid, handle.pid_start_time) is None:
            return False
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
