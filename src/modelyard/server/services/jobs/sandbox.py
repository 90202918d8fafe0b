"""What a job replica may see and use: the sandbox policy (executors/sandbox.py applies it).

Visible inside a replica, read-write: its job folder (`/workspace`), its owner's file root
(`/data`), its output dir (`/output`, in the job folder or the owner's files); read-only: the Python
runtime, the public files, its inputs (the model version at `/model`, a PEFT adapter's base, the
dataset version), the image's root filesystem when it names one. Each is also mounted at its host
path, so every path in the job's spec, env and `spec.json` is valid inside. All of MODELYARD_HOME
else (database, admin token, registry, blobs, other users, other jobs) is hidden under an empty
tmpfs.

Network: none (loopback only) for a one-replica job; one loopback shared by a multi-replica job's
replicas on a node (torch distributed); the host's when the job asks (`network: host`) and its owner
is an admin or listed in settings.sandbox.network_users."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import modelyard
from modelyard.core.errors import Conflict, Forbidden
from modelyard.server.db import session_scope
from modelyard.server.executors.base import Bind, SandboxSpec
from modelyard.server.executors.sandbox import DEFAULT_PATH, unavailable_reason
from modelyard.server.services import images
from modelyard.server.services.common.paths import user_root
from modelyard.server.settings import Settings

ALIASES = {"job_dir": "/workspace", "user_root": "/data", "model": "/model", "output_dir": "/output"}


def sandbox_mode(settings: Settings) -> str:
    """"bwrap" when replicas run sandboxed, "unsafe" when they run as plain processes."""
    mode = settings.sandbox.mode
    if mode == "unsafe":
        return "unsafe"
    return "bwrap" if unavailable_reason() is None else "missing"


def check_can_run(settings: Settings, *, is_admin: bool) -> None:
    """Refuse (409) a job that could only run unsandboxed when the admin did not choose that."""
    mode = sandbox_mode(settings)
    if mode == "missing" and (settings.sandbox.mode == "bwrap" or not is_admin):
        raise Conflict(f"jobs cannot be sandboxed on this server: {unavailable_reason()}. Ask the admin to "
                       "install bubblewrap, or to set MODELYARD_SANDBOX__MODE=unsafe on a single-user machine",
                       code="sandbox_unavailable")


MODELYARD_SRC = str(Path(modelyard.__file__).resolve().parent.parent)  # the folder holding the package


def check_host_network(settings: Settings, *, owner_id: str, owner_name: str, is_admin: bool) -> None:
    """network: host is for an admin, or an owner the server's sandbox.network_users lists."""
    if not (is_admin or owner_name in settings.sandbox.network_users or owner_id in settings.sandbox.network_users):
        raise Forbidden("network: host needs an admin, or an owner listed in the server's sandbox.network_users",
                        code="network_not_allowed")


def runtime_dirs() -> list[str]:
    """The interpreter, its venv and the modelyard package (editable installs live outside the venv),
    each as written and resolved: a venv reached through a symlink is run by that path
    (sys.executable), so both must exist inside."""
    out: list[str] = []
    for raw in (sys.base_prefix, sys.prefix, str(Path(sys.executable).parent.parent),
                str(Path(modelyard.__file__).parent.parent), MODELYARD_SRC):
        for d in dict.fromkeys((os.path.abspath(raw), str(Path(raw).resolve()))):
            if d.startswith("/usr/") or d == "/usr" or any(d == o or d.startswith(o + "/") for o in out):
                continue
            out = [o for o in out if not o.startswith(d + "/")] + [d]
    return out


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def sandbox_for(settings: Settings, job: Any, role_spec: dict, *, owner_name: str, owner_is_admin: bool,
                replicas: int, rootfs: str | None = None, run_config: dict | None = None) -> SandboxSpec | None:
    """The SandboxSpec of one replica of job; None when it runs unsandboxed (unsafe mode, or the
    admin's own job on a server without bubblewrap in auto mode)."""
    mode = sandbox_mode(settings)
    if mode == "unsafe":
        return None
    check_can_run(settings, is_admin=owner_is_admin)
    if mode == "missing":
        return None
    spec = job.spec
    binds: list[Bind] = [Bind(d, d) for d in runtime_dirs()]
    rw_roots = [spec["job_dir"], str(user_root(settings, job.owner_id))]
    for host in rw_roots:
        Path(host).mkdir(parents=True, exist_ok=True, mode=0o700)
        binds.append(Bind(host, host, writable=True))
    if settings.public_root.is_dir():
        binds.append(Bind(str(settings.public_root), str(settings.public_root)))
    for key in ("output_dir", "checkpoint_dir"):
        p = spec.get(key)
        if p and not _under(p, rw_roots):
            Path(p).mkdir(parents=True, exist_ok=True, mode=0o700)
            binds.append(Bind(p, p, writable=True))
    inputs: list[str] = []
    model = spec.get("model") or {}
    inputs += [p for p in (model.get("path"), model.get("base_path")) if p]
    data = spec.get("data") or {}
    if data.get("dir"):
        inputs.append(data["dir"])
    inputs += [str(Path(f).parent) for f in (data.get("train") or []) + (data.get("validate") or [])]
    seen: list[str] = list(rw_roots)
    for p in sorted(set(inputs), key=len):
        if p and Path(p).exists() and not _under(p, seen):
            binds.append(Bind(p, p))
            seen.append(p)
    aliases = {"job_dir": spec["job_dir"], "user_root": str(user_root(settings, job.owner_id)),
               "output_dir": spec.get("output_dir"), "model": model.get("path")}
    for key, inside in ALIASES.items():
        if aliases.get(key) and Path(aliases[key]).exists():
            binds.append(Bind(aliases[key], inside, writable=key != "model"))
    # set only by the server (services/serving builds serve jobs' specs; no request field maps to
    # it): a replica's socket folder (writable), a prepared runtime environment, the user's volumes
    for host, inside, writable in spec.get("extra_binds") or []:
        if Path(host).exists():
            binds.append(Bind(str(host), str(inside), writable=bool(writable)))
    want_host = spec.get("network") == "host"
    if want_host:  # checked at submit too; the server's list may have changed since
        check_host_network(settings, owner_id=job.owner_id, owner_name=owner_name, is_admin=owner_is_admin)
    network = "host" if want_host else ("job" if replicas > 1 else "none")
    run_config = run_config or {}
    cpu = float(role_spec.get("cpu") or 0)
    mem_mib = int(role_spec.get("memory_mib") or 0)
    return SandboxSpec(
        binds=binds, rootfs=rootfs, tmpfs=[str(settings.home)], network=network,
        uid=int(run_config.get("uid", 65534)), gid=int(run_config.get("gid", 65534)),
        cwd=run_config.get("cwd"), cpus=int(max(1, cpu)) if cpu else None,
        memory_bytes=mem_mib << 20 if mem_mib else None,
        max_processes=settings.sandbox.max_processes, max_open_files=settings.sandbox.max_open_files)


def sandbox_env(env: dict[str, str], sb: SandboxSpec | None, *, user_env: dict[str, str],
                image_env: dict[str, str] | None = None) -> dict[str, str]:
    """The replica's env adjusted to its sandbox: HOME is the fresh /tmp (the host's home is not
    there); in an image, the image's Env in full (PATH, HOME, LD_LIBRARY_PATH... name its own
    filesystem there), the user's env still winning."""
    if sb is None:
        return env
    out = dict(env)
    if "HOME" not in user_env:
        out["HOME"] = "/tmp"
    if sb.rootfs:
        out["PATH"] = DEFAULT_PATH
        for k, v in (image_env or {}).items():
            if k not in user_env and not k.startswith("MODELYARD_"):
                out[k] = v
    return out


def image_rootfs(ctx: Any, job: Any) -> tuple[str | None, dict]:
    """(the unpacked root filesystem of the image the job names, its run config {uid, gid, cwd,
    env}), or (None, {}) for a job without an image, a training job (the built-in trainer runs on
    the platform's runtime; the image's Env still applies) or a server without the sandbox.
    Unpacked once per image version and cached."""
    image = job.spec.get("image") or {}
    if not image.get("version_id") or job.spec.get("training") or sandbox_mode(ctx.settings) != "bwrap":
        return None, {}

    with session_scope(ctx.sessions) as s:
        root = images.ensure_rootfs(ctx.settings, s, image["version_id"])
        cfg = images.run_config(ctx.settings, s, image["version_id"])
    run = {"uid": cfg["uid"], "gid": cfg["gid"], "env": cfg["env"]}
    if not job.spec.get("working_dir"):
        run["cwd"] = cfg.get("working_dir") or ALIASES["job_dir"]
    return str(root), run
