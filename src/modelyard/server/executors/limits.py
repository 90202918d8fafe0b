"""Enforcing a replica's allocation: memory and process count by cgroup where one is writable
(cgroup v2, or v1's memory and pids controllers), else rlimits in the wrapper; CPU by affinity.

A replica's cgroup is `<our cgroup>/modelyard-<replica key>`; the wrapper moves itself into it
before it starts the sandbox, so everything the replica runs is charged there. When the kernel's
OOM killer acted in it, the replica's ending says "killed: memory limit (… MiB)"."""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class CgroupPlan:
    """Where a replica's cgroup dirs are (one per v1 controller, or one v2 dir)."""

    dirs: list[str]
    version: int


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for v2) -> our cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                out[c] = path
    except OSError:
        pass
    return out


def _writable(d: Path) -> bool:
    return d.is_dir() and os.access(d, os.W_OK)


def _v1_dir(controller: str, own: dict[str, str]) -> Path | None:
    path = own.get(controller)
    if path is None:
        return None
    d = CGROUP_ROOT / controller / path.lstrip("/")
    return d if _writable(d) else None


def _v2_dir(own: dict[str, str]) -> Path | None:
    path = own.get("")
    if path is None:
        return None
    for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        d = mount / path.lstrip("/")
        ctl = d / "cgroup.subtree_control"
        try:
            if _writable(d) and "memory" in ctl.read_text().split():
                return d
        except OSError:
            continue
    return None


def create(key: str, *, memory_bytes: int | None, max_processes: int | None) -> CgroupPlan | None:
    """A fresh cgroup for one replica with its limits written, or None when none is writable here
    (the wrapper then falls back to rlimits)."""
    if not memory_bytes and not max_processes:
        return None
    own = _own_cgroups()
    name = "modelyard-" + re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    try:
        v2 = _v2_dir(own)
        if v2 is not None:
            d = v2 / name
            d.mkdir(exist_ok=True)
            if memory_bytes:
                (d / "memory.max").write_text(str(memory_bytes))
                if (d / "memory.swap.max").exists():
                    (d / "memory.swap.max").write_text("0")
            if max_processes and (d / "pids.max").exists():
                (d / "pids.max").write_text(str(max_processes))
            return CgroupPlan([str(d)], 2)
        dirs = []
        mem = _v1_dir("memory", own) if memory_bytes else None
        if mem is not None:
            d = mem / name
            d.mkdir(exist_ok=True)
            (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
            try:  # no swap either, where the kernel accounts it
                (d / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            except OSError:
                pass
            dirs.append(str(d))
        pids = _v1_dir("pids", own) if max_processes else None
        if pids is not None:
            d = pids / name
            d.mkdir(exist_ok=True)
            (d / "pids.max").write_text(str(max_processes))
            dirs.append(str(d))
        return CgroupPlan(dirs, 1) if dirs else None
    except OSError as exc:
        log.warning("cannot create a cgroup for %s: %s", key, exc)
        return None


def enforces_memory(plan: CgroupPlan | None) -> bool:
    return plan is not None and any(Path(d, "memory.max").exists() or Path(d, "memory.limit_in_bytes").exists()
                                    for d in plan.dirs)


def oom_killed(dirs: list[str]) -> bool:
    """Did the kernel's OOM killer act in this replica's cgroup?"""
    for d in dirs:
        for name in ("memory.events", "memory.oom_control"):
            try:
                text = Path(d, name).read_text()
            except OSError:
                continue
            m = re.search(r"^oom_kill (\d+)", text, re.M)
            if m and int(m.group(1)) > 0:
                return True
    return False


def remove(dirs: list[str]) -> None:
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            pass  # still has processes (re-attached later) or already gone


class CorePicker:
    """Chooses which cores a replica is pinned to: the least used by this executor's live replicas."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._use: dict[int, int] = {}

    def take(self, n: int) -> list[int]:
        avail = sorted(os.sched_getaffinity(0))
        n = max(1, min(n, len(avail)))
        with self._lock:
            chosen = sorted(avail, key=lambda c: (self._use.get(c, 0), c))[:n]
            for c in chosen:
                self._use[c] = self._use.get(c, 0) + 1
        return sorted(chosen)

    def hold(self, cores: list[int]) -> None:
        with self._lock:
            for c in cores:
                self._use[c] = self._use.get(c, 0) + 1

    def give_back(self, cores: list[int]) -> None:
        with self._lock:
            for c in cores:
                if self._use.get(c, 0) > 0:
                    self._use[c] -= 1
