"""The replica sandbox: bubblewrap (`bwrap`) in unprivileged Linux namespaces.

A sandboxed replica gets its own user, PID, mount, IPC, UTS and cgroup namespaces and (by
default) its own network namespace with loopback only. Its root is a fresh tmpfs holding only:
- the host's system dirs read-only (/usr, /bin, /lib*, /sbin, and a short list of /etc entries:
  not /etc/shadow or other secrets), or an image's unpacked root filesystem read-only;
- /proc of its own PID namespace, a minimal /dev, an empty /tmp;
- the binds of its SandboxSpec: the Python runtime read-only, its job folder and its owner's file
  root read-write, its inputs read-only, each at its host path (so paths in the job's spec and env
  stay valid) and at the documented aliases (/workspace, /data, /model, /output).
Nothing else of the host exists inside: no database, no admin token, no other user's files or jobs,
no other process. The process runs as an unprivileged uid (65534, or the image's User) with no
capabilities.

The replicas of one multi-replica job on one node share one network namespace (loopback between
them, nothing outside): the first is started with its own, reports its pid over bwrap's
`--info-fd` and waits on `--block-fd` while the executor opens its user and network namespaces;
the others inherit those two descriptors and join them with `nsenter` before starting their own
bwrap (the descriptors keep the namespaces alive even when the first replica has already ended).

bwrap does not forward signals; the wrapper (wrapper.py) is a child subreaper so that a SIGTERM to
the replica's process group reaches the job itself and the wrapper still sees the job's own exit."""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
from pathlib import Path

from .base import Bind, SandboxSpec

# /etc entries a program commonly needs (name resolution, TLS roots, the dynamic linker, locale).
ETC_ENTRIES = ("passwd", "group", "hosts", "host.conf", "nsswitch.conf", "resolv.conf", "ld.so.cache",
               "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "alternatives", "ssl/certs",
               "ca-certificates", "ca-certificates.conf", "mime.types", "os-release", "debian_version",
               "protocols", "services", "gai.conf", "login.defs", "python3", "python3.11", "terminfo", "magic")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(RuntimeError):
    """The sandbox cannot be set up for this launch (the message says why)."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when bwrap runs here in unprivileged namespaces; else why not (cached per process)."""
    exe = bwrap_path()
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        out = subprocess.run([exe, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "--proc", "/proc",
                              "--dev", "/dev", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not start: {exc}"
    if out.returncode != 0:
        return f"bwrap cannot create namespaces here (user namespaces off?): {out.stderr.strip()[:300]}"
    return None


@functools.lru_cache(maxsize=1)
def _system_args() -> tuple[str, ...]:
    """The host's system dirs and /etc entries (read once: they do not come and go)."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    for name in ETC_ENTRIES:
        p = Path("/etc") / name
        if p.exists():
            args += ["--ro-bind", str(p), str(p)]
    return tuple(args)


def _safe_mkdirs(root: Path, inside: str) -> None:
    """Create root/<inside> (a mount point in an image's rootfs) without following any symlink, so
    a rootfs whose /root is a link to /etc cannot make us create or mount anything outside it."""
    cur = root
    for part in Path(inside).parts[1:]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            try:
                os.mkdir(cur, 0o755)
            except FileExistsError:  # another launch made it meanwhile
                pass
            st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise SandboxError(f"the image has {str(cur)[len(str(root)):]} as a link or file; cannot mount "
                               f"{inside} there")


def _ordered(binds: list[Bind]) -> list[Bind]:
    # parents before children: a bind inside another (output inside the job folder) must come after it
    return sorted(binds, key=lambda b: (len(Path(b.inside).parts), b.inside))


def bwrap_argv(spec: SandboxSpec, argv: list[str], *, info_fd: int | None = None, block_fd: int | None = None,
               join_net: tuple[int, int] | None = None) -> list[str]:
    """The command line that runs argv inside the sandbox spec describes. join_net: descriptors (as
    the child will have them) of the user and network namespaces to join."""
    exe = bwrap_path()
    if exe is None:
        raise SandboxError(unavailable_reason() or "bwrap is not installed")
    out: list[str] = []
    if join_net is not None:  # share the network namespace of the job's first replica
        out += ["nsenter", f"--user=/proc/self/fd/{join_net[0]}", f"--net=/proc/self/fd/{join_net[1]}",
                "--preserve-credentials"]
    out += [exe, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if spec.network == "none" or (spec.network == "job" and join_net is None):
        out.append("--unshare-net")
    elif spec.network not in ("job", "host"):
        raise SandboxError(f"unknown sandbox network {spec.network!r}")
    # no capabilities even as uid 0 (an image's root): with CAP_SYS_ADMIN in its namespace a job
    # could remount its read-only binds writable
    out += ["--uid", str(spec.uid), "--gid", str(spec.gid), "--cap-drop", "ALL", "--hostname", "replica"]
    if info_fd is not None:
        out += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        out += ["--block-fd", str(block_fd)]
    mount_points = ["/proc", "/dev", "/tmp", *spec.tmpfs, *(b.inside for b in spec.binds)]
    if spec.rootfs:
        root = Path(spec.rootfs)
        for inside in mount_points:
            _safe_mkdirs(root, inside)
        out += ["--ro-bind", str(root), "/"]
    else:
        out += list(_system_args())
    out += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for d in sorted(spec.tmpfs, key=lambda p: len(Path(p).parts)):
        out += ["--tmpfs", d]
    for b in _ordered(spec.binds):
        if not os.path.exists(b.host):
            raise SandboxError(f"{b.host} (to be mounted at {b.inside}) does not exist")
        out += ["--bind" if b.writable else "--ro-bind", b.host, b.inside]
    if spec.cwd:
        out += ["--chdir", spec.cwd]
    return out + ["--", *argv]
