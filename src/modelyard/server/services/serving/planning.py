"""What a service replica runs (a LaunchPlan from its version's runtime) and the serve job that
runs it.

Runtimes, chosen per version:
- `transformers` (built in): `python -m modelyard.runtime.serve --model PATH --served-name NAME
  [--adapter NAME=PATH] --uds SOCKET --dtype auto` — planned here (plan_transformers).
- `vllm`: `modelyard.server.services.runtimes:plan_vllm`, a prepared environment.
- `template`: `modelyard.server.services.templates:plan_template` (seed 003 service templates).
- `image`: a custom image (or a command on the platform runtime) serving HTTP on a TCP port inside
  its sandbox, fronted by `python -m modelyard.runtime.relay --uds SOCKET --port PORT -- sh -c CMD`.
- `auto`: vllm when its environment is prepared and the model is a Hugging Face folder, else
  transformers.
The vllm and template planners are imported by path when needed, so this package works without
them; a runtime whose planner (or relay) is not installed answers 400 runtime_unavailable.

Sockets: one folder per replica, `<socket_root>/<replica id>/s.sock` (0700), bound writable into
the replica's sandbox and nothing else: a replica never sees another replica's socket. The root is
short (`/tmp/modelyard-<8 hex of MODELYARD_HOME>`) because a socket path must stay under 108 bytes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shlex
import sys
from pathlib import Path
from typing import Any

from modelyard.core.errors import BadRequest
from modelyard.core.serving import LaunchPlan
from modelyard.server.settings import Settings

RUNTIMES = ("auto", "transformers", "vllm", "template", "image")
PLANNERS = {"vllm": "modelyard.server.services.runtimes:plan_vllm",
            "template": "modelyard.server.services.templates:plan_template"}
RUNTIME_READY = "modelyard.server.services.runtimes:is_ready"
RELAY_MODULE = "modelyard.runtime.relay"
SERVE_MODULE = "modelyard.runtime.serve"


def socket_root(settings: Settings) -> Path:
    if settings.serving.socket_root is not None:
        return Path(settings.serving.socket_root)
    digest = hashlib.sha256(str(Path(settings.home).resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"modelyard-{digest}"


def socket_dir(settings: Settings, replica_id: str) -> Path:
    return socket_root(settings) / replica_id


def socket_path(settings: Settings, replica_id: str) -> str:
    path = str(socket_dir(settings, replica_id) / "s.sock")
    if len(path.encode()) >= 108:
        raise BadRequest(f"the replica socket path {path} is {len(path.encode())} bytes; a Unix socket path must "
                         "stay under 108 (set MODELYARD_SERVING__SOCKET_ROOT to a shorter folder)",
                         code="socket_path_too_long")
    return path


def make_socket_dir(settings: Settings, replica_id: str) -> Path:
    root = socket_root(settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    d = socket_dir(settings, replica_id)
    d.mkdir(exist_ok=True, mode=0o700)
    sock = d / "s.sock"
    if sock.exists() or sock.is_socket():
        sock.unlink()  # a stale socket from an earlier run would refuse the bind
    return d


def _import(path: str) -> Any:
    mod, _, fn = path.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except ModuleNotFoundError as exc:
        if exc.name and mod.startswith(exc.name):
            raise BadRequest(f"the {mod.rsplit('.', 1)[-1]} runtime support ({mod}) is not installed on this "
                             "server", code="runtime_unavailable") from None
        raise


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def vllm_ready(settings: Settings) -> bool:
    try:
        return bool(_import(RUNTIME_READY)(settings, "vllm"))
    except BadRequest:
        return False


def choose_runtime(settings: Settings, runtime: str, *, model_format: str | None) -> str:
    if runtime not in RUNTIMES:
        raise BadRequest(f"unknown runtime {runtime!r}; one of {', '.join(RUNTIMES)}", code="unknown_runtime")
    if runtime != "auto":
        return runtime
    if model_format in ("hf", "peft") and vllm_ready(settings):
        return "vllm"
    return "transformers"


def plan_transformers(settings: Settings, *, model_path: str, adapters: dict[str, str], served_names: list[str],
                      socket_path: str, resources: dict) -> LaunchPlan:
    """The built-in runtime: one process serving an OpenAI-compatible app over transformers'
    continuous batching; adapters of the same base are chosen by the request's `model`."""
    if settings.serving.runtime_argv:
        fill = {"{socket}": socket_path, "{model}": model_path, "{served_name}": (served_names or [""])[0]}
        argv = [fill.get(a, a) for a in settings.serving.runtime_argv]  # whole items only: code may hold braces
    else:
        argv = [sys.executable, "-m", SERVE_MODULE, "--model", model_path]
        for name in served_names:
            argv += ["--served-name", name]
        for name, path in adapters.items():
            argv += ["--adapter", f"{name}={path}"]
        argv += ["--uds", socket_path, "--dtype", "auto"]
    return LaunchPlan(argv=argv, socket_path=socket_path, served_names=list(served_names) + list(adapters),
                      boot_timeout_s=settings.serving.boot_timeout_s)


def plan_image(settings: Settings, *, command: str, ports: list[int], socket_path: str,
               image_cmd: list[str] | None) -> LaunchPlan:
    """A custom image (or a command on the platform runtime) serving plain HTTP on its first port,
    fronted by the relay on the replica's socket."""
    if not _module_present(RELAY_MODULE):
        raise BadRequest(f"custom-image services need the relay ({RELAY_MODULE}), which is not installed on "
                         "this server", code="runtime_unavailable")
    inner = ["sh", "-c", command] if command.strip() else list(image_cmd or [])
    if not inner:
        raise BadRequest("a custom-image version needs a command (or an image with a Cmd)", code="missing_command")
    argv = [sys.executable, "-m", RELAY_MODULE, "--uds", socket_path, "--port", str(ports[0]), "--", *inner]
    return LaunchPlan(argv=argv, socket_path=socket_path, kind="http", ready_path="/", live_path="/",
                      boot_timeout_s=settings.serving.boot_timeout_s)


def parse_ports(text: str | None) -> list[int]:
    out = []
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise BadRequest(f"imagePorts {text!r}: {part!r} is not a port number", code="invalid_request")
        out.append(int(part))
    return out


def plan(settings: Settings, session: Any, *, runtime: str, model: dict | None, adapters: dict[str, str],
         served_names: list[str], template_id: str | None, command: str, ports: list[int], image: dict | None,
         socket_path: str, resources: dict) -> LaunchPlan:
    """The LaunchPlan of one replica of a version (`runtime` already chosen, never `auto`)."""
    if runtime == "transformers":
        return plan_transformers(settings, model_path=_model_dir(model), adapters=adapters,
                                 served_names=served_names, socket_path=socket_path, resources=resources)
    if runtime == "vllm":
        return _import(PLANNERS["vllm"])(settings, model_path=_model_dir(model), adapters=adapters,
                                         served_names=served_names, socket_path=socket_path, resources=resources)
    if runtime == "template":
        if not template_id:
            raise BadRequest("runtime template needs a template_id", code="missing_template")
        return _import(PLANNERS["template"])(settings, session, template_id=template_id, socket_path=socket_path,
                                             resources=resources)
    if runtime == "image":
        return plan_image(settings, command=command, ports=ports or [8080], socket_path=socket_path,
                          image_cmd=[*((image or {}).get("entrypoint") or []), *((image or {}).get("cmd") or [])])
    raise BadRequest(f"unknown runtime {runtime!r}", code="unknown_runtime")


def _model_dir(model: dict | None) -> str:
    if not model:
        raise BadRequest("a model runtime needs a model version (aiApplicationVersionId / model)",
                         code="missing_model")
    return model.get("base_path") or model["path"]


def describe_argv(argv: list[str]) -> str:
    return shlex.join(argv)[:1000]
