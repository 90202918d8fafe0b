"""The template YAML (seed 003), parsed with yaml.safe_load and validated into plain data.

    services:                       # at least one; the first one's first port is where the app listens
      - name: qwen-chat
        ports: [3000]
        livez: /livez               # GET -> 200 while healthy   (default /livez)
        readyz: /readyz             # GET -> 200 once it serves  (default /readyz)
        serviceBootupTime: 30       # seconds to become ready    (default 300)
    env: ["KEY:value", ...]         # or a mapping {KEY: value}
    distro:
      packages: vim,curl            # must already be installed on the node (dpkg); never installed for you
    python:
      requirements_txt: ./requirements.txt   # relative to installPath (in your files)
      requirements: ["pkg==1.0"]             # or inline
      index_url: https://pypi.org/simple     # or a folder of wheels in your files
      trusted_host: pypi.example.com

Every key is honoured or refused (unsupported_field); nothing is silently dropped.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from modelyard.core.errors import BadRequest

TOP_KEYS = {"services", "env", "distro", "python"}
SERVICE_KEYS = {"name", "ports", "livez", "readyz", "serviceBootupTime"}
PYTHON_KEYS = {"requirements_txt", "requirements", "index_url", "trusted_host", "extra_index_url"}
DISTRO_KEYS = {"packages"}
DEFAULT_BOOT_S = 300
MAX_BOOT_S = 24 * 3600
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# names the platform sets for the replica; a template may not override them
RESERVED_ENV = {"PATH", "VIRTUAL_ENV", "PYTHONHOME", "LD_PRELOAD", "LD_LIBRARY_PATH"}
PKG_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?$")


class TemplateError(BadRequest):
    code = "invalid_template"


def _unsupported(where: str, keys: set) -> None:
    if keys:
        raise BadRequest(f"{where}: unsupported key(s) {', '.join(sorted(map(str, keys)))}",
                         code="unsupported_field")


def _http_path(value: Any, where: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise TemplateError(f"{where} must be an HTTP path starting with '/', got {value!r}")
    return value


def _services(raw: Any) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise TemplateError("yaml: `services` must be a non-empty list")
    out = []
    for i, svc in enumerate(raw):
        where = f"yaml: services[{i}]"
        if not isinstance(svc, dict):
            raise TemplateError(f"{where} must be a mapping")
        _unsupported(where, set(svc) - SERVICE_KEYS)
        ports = svc.get("ports")
        if isinstance(ports, int):
            ports = [ports]
        if not isinstance(ports, list) or not ports:
            raise TemplateError(f"{where}.ports must list at least one port")
        for p in ports:
            if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
                raise TemplateError(f"{where}.ports: {p!r} is not a TCP port (1-65535)")
        boot = svc.get("serviceBootupTime", DEFAULT_BOOT_S)
        if isinstance(boot, bool) or not isinstance(boot, int | float) or not 0 < boot <= MAX_BOOT_S:
            raise TemplateError(f"{where}.serviceBootupTime must be seconds in (0, {MAX_BOOT_S}], got {boot!r}")
        out.append({"name": str(svc.get("name") or f"service-{i}"), "ports": ports,
                    "livez": _http_path(svc.get("livez"), f"{where}.livez", "/livez"),
                    "readyz": _http_path(svc.get("readyz"), f"{where}.readyz", "/readyz"),
                    "serviceBootupTime": float(boot)})
    return out


def _env(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    pairs: list[tuple[Any, Any]] = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and len(item) == 1:
                pairs.append(next(iter(item.items())))
            elif isinstance(item, str) and (":" in item or "=" in item):
                sep = min(item.index(c) for c in ":=" if c in item)
                pairs.append((item[:sep], item[sep + 1:]))
            else:
                raise TemplateError(f"yaml: env entry {item!r} is not KEY:VALUE")
    else:
        raise TemplateError("yaml: `env` must be a list of KEY:VALUE or a mapping")
    env = {}
    for k, v in pairs:
        k = str(k).strip()
        if not ENV_NAME.match(k):
            raise TemplateError(f"yaml: env name {k!r} is not a valid variable name")
        if k in RESERVED_ENV or k.startswith("MODELYARD_"):
            raise TemplateError(f"yaml: env {k} is set by the platform and cannot be overridden")
        env[k] = "" if v is None else str(v).strip()
    return env


def _distro(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise TemplateError("yaml: `distro` must be a mapping with `packages`")
    _unsupported("yaml: distro", set(raw) - DISTRO_KEYS)
    pk = raw.get("packages") or []
    names = [p.strip() for p in pk.split(",")] if isinstance(pk, str) else pk
    if not isinstance(names, list):
        raise TemplateError("yaml: distro.packages must be a comma-separated string or a list")
    out = []
    for n in names:
        if not isinstance(n, str) or not PKG_NAME.match(n.strip()):
            raise TemplateError(f"yaml: distro package {n!r} is not a package name")
        out.append(n.strip())
    return out


def _python(raw: Any) -> dict:
    if raw is None:
        return {"requirements_txt": "", "requirements": [], "index_url": "", "trusted_hosts": [],
                "extra_index_urls": []}
    if not isinstance(raw, dict):
        raise TemplateError("yaml: `python` must be a mapping")
    _unsupported("yaml: python", set(raw) - PYTHON_KEYS)
    reqs = raw.get("requirements") or []
    if isinstance(reqs, str):
        reqs = [r for r in reqs.splitlines() if r.strip()]
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise TemplateError("yaml: python.requirements must be a list of requirement strings")

    def strings(key: str) -> list[str]:
        v = raw.get(key) or []
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise TemplateError(f"yaml: python.{key} must be a string or a list of strings")
        return [x.strip() for x in v if x.strip()]

    index = raw.get("index_url") or ""
    if not isinstance(index, str):
        raise TemplateError("yaml: python.index_url must be a string")
    txt = raw.get("requirements_txt") or ""
    if not isinstance(txt, str):
        raise TemplateError("yaml: python.requirements_txt must be a path")
    return {"requirements_txt": txt.strip(), "requirements": [r.strip() for r in reqs],
            "index_url": index.strip(), "trusted_hosts": strings("trusted_host"),
            "extra_index_urls": _http_urls(strings("extra_index_url"))}


def _http_urls(urls: list[str]) -> list[str]:
    for u in urls:
        if not u.startswith(("https://", "http://")):
            raise TemplateError(f"yaml: python.extra_index_url {u!r} must be an http(s) URL")
    return urls


def parse_template_yaml(text: str) -> dict:
    """The validated spec, or TemplateError saying what is wrong (with the line for YAML errors)."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("yaml is required (the service description: services, env, distro, python)")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(f"yaml does not parse{where}: {problem}") from None
    except RecursionError:
        raise TemplateError("yaml is nested too deeply") from None
    if not isinstance(doc, dict):
        raise TemplateError("yaml must be a mapping with `services` (and optionally env, distro, python)")
    _unsupported("yaml", set(doc) - TOP_KEYS)
    return {"services": _services(doc.get("services")), "env": _env(doc.get("env")),
            "distro": _distro(doc.get("distro")), "python": _python(doc.get("python"))}


def parse_requirements_txt(text: str) -> list[str]:
    """Requirement lines; options (-r, -e, --index-url ...) are refused: say them in the YAML."""
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise TemplateError(f"requirements.txt: option lines are not supported ({line!r}); put the index "
                                "in python.index_url")
        out.append(line)
    return out
