"""The Executor interface: how the scheduler runs a job's replicas, whatever runs them.

The scheduler decides *what* runs *where* (allocations on nodes, ranks, env, command) and hands
the executor a list of `ReplicaLaunch`. The executor answers one `ReplicaHandle` per replica; the
handle's fields are persisted on the replica row (pid + pid start time for processes, or an
external id for a Ray actor / a remote agent) so that a restarted server can find the replica
again with `recover()` / `poll()`. Everything else (state transitions, the ledger, events) stays
in the scheduler, so a new executor only implements the five methods below.

Executors are chosen per node: NodeModel.executor names one of EXECUTORS (a "module:Class"
string, imported lazily so that an optional dependency such as Ray is only needed where used).
"""

from __future__ import annotations

import importlib
import json
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXECUTORS: dict[str, str] = {
    "local": "modelyard.server.executors.local:LocalProcessExecutor",
    # "ray": "modelyard.server.executors.ray:RayExecutor",  (a later issue)
}


@dataclass
class Bind:
    """One path the sandboxed replica sees: `host` mounted at `inside` (read-only unless writable)."""

    host: str
    inside: str
    writable: bool = False


@dataclass
class SandboxSpec:
    """What a replica may see and use (applied by executors/sandbox.py with bubblewrap).

    Decided by the server (services/jobs/sandbox.py: policy), applied by the executor (mechanism).
    A launch without one runs unsandboxed, which only the admin's explicit unsafe mode allows."""

    binds: list[Bind] = field(default_factory=list)
    rootfs: str | None = None  # an image's unpacked root filesystem (read-only); None: the host's system dirs
    tmpfs: list[str] = field(default_factory=list)  # fresh empty dirs (besides /tmp), e.g. over MODELYARD_HOME
    network: str = "none"  # "none" (loopback only) | "job" (one loopback shared by the job's replicas) | "host"
    uid: int = 65534
    gid: int = 65534
    cwd: str | None = None  # inside the sandbox
    cpus: int | None = None  # pin to this many cores
    memory_bytes: int | None = None
    max_processes: int | None = None
    max_open_files: int | None = None


@dataclass
class ReplicaLaunch:
    """Everything needed to start one replica."""

    job_id: str
    attempt: int
    role: str
    index: int
    rank: int
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    replica_dir: Path  # holds the log, launch.json and exit_code
    log_path: Path
    devices: list[int] = field(default_factory=list)
    node_id: str | None = None
    sandbox: SandboxSpec | None = None  # None: unsandboxed (the admin's explicit unsafe mode)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


@dataclass
class ReplicaHandle:
    """What identifies a started replica; persisted on JobReplicaModel."""

    name: str
    replica_dir: str
    log_path: str
    pid: int | None = None
    pid_start_time: float | None = None
    external_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReplicaStatus:
    alive: bool
    exit_code: int | None = None
    reason: str = ""  # why it ended, when that is not a plain exit code


class Executor(ABC):
    """Runs replicas. Implementations must be thread-safe: the scheduler loop, API handlers
    (cancel, logs) and watcher threads call them concurrently."""

    name: str = "?"

    def __init__(self, *, notify: Callable[[], None] | None = None):
        # called (from any thread) when a replica ends, so the scheduler wakes up at once
        self.notify = notify or (lambda: None)
        self.lock = threading.Lock()

    @abstractmethod
    def submit(self, launches: list[ReplicaLaunch]) -> list[ReplicaHandle]:
        """Start all replicas of one job attempt, or none: on failure stop the started ones and raise."""

    @abstractmethod
    def poll(self, handle: ReplicaHandle) -> ReplicaStatus:
        """Is it still running; if not, how did it end. Must work for replicas started by an earlier
        server process (after recover())."""

    @abstractmethod
    def cancel(self, handles: list[ReplicaHandle], *, force: bool = False) -> None:
        """Ask the replicas to stop (SIGTERM-like); force=True kills them (SIGKILL-like). Returns at once."""

    @abstractmethod
    def logs(self, handle: ReplicaHandle, *, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        """Log bytes from offset (at most limit) and the next offset."""

    @abstractmethod
    def recover(self, handle: ReplicaHandle) -> bool:
        """Re-attach to a replica after a server restart: True when it is still running and is the
        same replica (not a reused pid); then poll() and notify work for it as for a new one."""

    # --- on the launch record and the exit: shared by every executor -------------------------
    @staticmethod
    def read_launch_record(replica_dir: str | Path) -> dict | None:
        """`<replica_dir>/launch.json` ({pid, pid_start_time, attempt}), written right after the
        start, so a replica whose server died before recording it can still be found."""
        try:
            return json.loads((Path(replica_dir) / "launch.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def describe_exit(code: int | None) -> str:
        return describe_exit(code)

    def iter_logs(self, handle: ReplicaHandle, *, offset: int = 0, chunk: int = 64 * 1024) -> Iterator[bytes]:
        while True:
            data, offset = self.logs(handle, offset=offset, limit=chunk)
            if not data:
                return
            yield data


_INSTANCES_LOCK = threading.Lock()


def describe_exit(code: int | None) -> str:
    """A replica's ending in words: "exit code 3", "killed by signal SIGKILL"."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def get_executor(ctx: Any, name: str, *, notify: Callable[[], None] | None = None) -> Executor:
    """The executor instance for a name, one per app context (kept in ctx.components); notify is
    what it calls when a replica ends (the caller's wake-up, so executors import nothing above)."""
    key = f"executor:{name}"
    with _INSTANCES_LOCK:
        ex = ctx.components.get(key)
        if ex is None:
            spec = EXECUTORS.get(name)
            if spec is None:
                raise LookupError(f"no executor named {name!r} (known: {', '.join(sorted(EXECUTORS))})")
            mod, cls = spec.split(":")
            ex = getattr(importlib.import_module(mod), cls)(notify=notify)
            ctx.components[key] = ex
        return ex
