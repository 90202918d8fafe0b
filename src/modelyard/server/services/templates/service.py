"""Service templates: create (every field honoured or refused), list, show, delete, and the seed's
inventory shape. Creating a template checks what a deploy would need on the platform now:
distro packages installed (dpkg), a node with the GPU compute capability, an image per
architecture that the user can see, the Python version, the install path in the user's files —
and starts preparing its Python environment (a cached uv virtualenv, shared by hash)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, Forbidden
from modelyard.server.auth import Principal
from modelyard.server.orm import NodeModel
from modelyard.server.orm.templates import ServiceTemplateModel
from modelyard.server.services import images as images_svc
from modelyard.server.services import models as models_svc
from modelyard.server.services import runtimes
from modelyard.server.services.common import (
    get_owned,
    get_visible,
    paginate,
    pick_by_name,
    resolve_user_path,
    visible,
)
from modelyard.server.services.templates.spec import (
    parse_requirements_txt,
    parse_template_yaml,
)
from modelyard.server.settings import Settings

TYPES = ("Endpoint",)
PY_VERSION = re.compile(r"^3(\.\d{1,2}){0,2}$")
ARCHES = {"X86_64": "x86_64", "AMD64": "x86_64", "AARCH64": "aarch64", "ARM64": "aarch64"}


@dataclass
class TemplateInput:
    """The seed's `param` fields (native bodies map onto the same)."""

    name: str | None = None
    yaml: str | None = None
    request_cpu: float | None = None
    request_memory_mib: int | None = None
    start_command: str | None = None
    description: str = ""
    install_path: str = ""
    gpu_compute_capability: str = ""
    python_version: str = ""
    conda_version: str = ""
    type: str = "Endpoint"
    framework: str = ""
    source: str = ""
    model_center_uuid: str = ""
    system: bool = False
    support_distributed: bool = False
    architecture_images: list[dict] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)
    resource_uuid: str = ""
    # accepted only empty: what this platform does not do (each refused with its reason)
    unsupported: dict[str, Any] = field(default_factory=dict)


UNSUPPORTED_REASONS = {
    "zoneUuid": "there is one zone: omit zoneUuid",
    "condaVersion": "environments are uv virtualenvs, conda is not used: omit condaVersion",
    "containerCommand": "templates run startCommand in the replica's sandbox, not a container entrypoint",
    "containerArgs": "templates run startCommand in the replica's sandbox, not a container entrypoint",
    "vendorToSpecUuidsMap": "GPU specs per vendor are not modelled: use gpuComputeCapability",
    "tagUuids": "tags are set with the resource tag API after creation",
    "systemTags": "system tags are not supported",
    "userTags": "user tags are set with the resource tag API after creation",
}


# --- checks against the platform ---------------------------------------------------------------

def missing_distro_packages(names: list[str]) -> list[str]:
    """Packages dpkg does not list as installed. The platform never runs apt for a user."""
    if not names:
        return []
    if shutil.which("dpkg-query") is None:
        raise BadRequest("distro packages cannot be checked on this node (no dpkg-query): remove "
                         "yaml distro.packages", code="distro_unsupported")
    missing = []
    for name in names:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(name)
    return missing


def _capability(value: str) -> tuple[int, int]:
    try:
        major, _, minor = value.strip().partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise BadRequest(f"gpuComputeCapability {value!r} is not MAJOR.MINOR (e.g. 7.5)",
                         code="invalid_template") from None


def nodes_with_capability(session: Session, required: str) -> list[str]:
    """Names of ready nodes with a GPU whose recorded compute capability is at least `required`."""
    need = _capability(required)
    out = []
    for node in session.scalars(select(NodeModel).where(NodeModel.status == "ready")):
        for gpu in node.gpu_info or []:
            cap = str(gpu.get("compute_capability") or "")
            try:
                if cap and _capability(cap) >= need:
                    out.append(node.name)
                    break
            except BadRequest:
                continue
    return out


def _node_arches(session: Session) -> set[str]:
    return {(n.arch or "").lower() for n in session.scalars(select(NodeModel).where(NodeModel.status == "ready"))}


def _resolve_images(session: Session, principal: Principal, entries: list[dict]) -> list[dict]:
    out = []
    for i, e in enumerate(entries):
        where = f"architectureImages[{i}]"
        if not isinstance(e, dict):
            raise BadRequest(f"{where} must be an object", code="invalid_template")
        extra = set(e) - {"cpuArchitecture", "vmImageUuid", "dockerImage"}
        if extra:
            raise BadRequest(f"{where}: unsupported key(s) {', '.join(sorted(extra))}", code="unsupported_field")
        arch = ARCHES.get(str(e.get("cpuArchitecture") or "").upper())
        if arch is None:
            raise BadRequest(f"{where}.cpuArchitecture {e.get('cpuArchitecture')!r} is not one of X86_64, AARCH64",
                             code="invalid_template")
        refs = [(k, e[k]) for k in ("dockerImage", "vmImageUuid") if e.get(k)]
        if not refs:
            raise BadRequest(f"{where} names no image (dockerImage or vmImageUuid)", code="invalid_template")
        for key, ref in refs:
            try:
                v = images_svc.resolve_image_version(session, principal, str(ref))
            except Exception as exc:  # NotFound / ambiguity: said in the platform's words
                raise BadRequest(f"{where}.{key} {ref!r} is not an image you can see in the platform's image "
                                 f"registry ({getattr(exc, 'message', exc)})", code="image_not_found") from None
            if v.architecture and ARCHES.get(v.architecture.upper(), v.architecture.lower()) != arch:
                raise BadRequest(f"{where}.{key} {ref!r} is built for {v.architecture}, not {arch}",
                                 code="invalid_template")
            out.append({"arch": arch, "field": key, "ref": str(ref), "image_version_id": v.id})
    if out:
        arches = {o["arch"] for o in out}
        if not arches & _node_arches(session):
            raise BadRequest(f"no node has a CPU architecture this template has an image for ({', '.join(sorted(arches))})",
                             code="no_matching_node")
    return out


def env_spec_of(spec: dict, requirements: list[str], python_version: str, label: str) -> runtimes.EnvSpec | None:
    if not requirements:
        return None
    py = spec["python"]
    return runtimes.EnvSpec(requirements=tuple(requirements), python=python_version, index_url=py["index_url"],
                            extra_index_urls=tuple(py["extra_index_urls"]),
                            trusted_hosts=tuple(py["trusted_hosts"]), label=label)


def template_env_spec(t: ServiceTemplateModel) -> runtimes.EnvSpec | None:
    return env_spec_of(t.spec, t.spec["python"]["resolved_requirements"], t.python_version, f"template {t.name}")


def _check_requirements(requirements: list[str]) -> list[str]:
    """PEP 508 requirements; direct references to local files are refused (they would read the
    server's disk outside the user's files)."""
    from packaging.requirements import InvalidRequirement, Requirement

    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise BadRequest(f"requirement {line!r} is not valid: {exc}", code="invalid_template") from None
        if req.url and not req.url.startswith(("https://", "http://")):
            raise BadRequest(f"requirement {line!r}: only http(s) direct references are allowed; put local wheels "
                             "in a folder of your files and name it in python.index_url", code="invalid_template")
    return requirements


def _index_in_user_files(settings: Settings, principal: Principal, index_url: str) -> str:
    """An http(s) index as is; anything else names a folder of wheels in the user's own files
    (a leading '/' is the root of their files), stored as its absolute path."""
    if not index_url or index_url.startswith(("https://", "http://")):
        return index_url
    if "://" in index_url:
        raise BadRequest(f"python.index_url {index_url!r}: use an http(s) URL or a folder in your files",
                         code="invalid_template")
    folder = resolve_user_path(settings, principal.id, index_url)
    if not folder.is_dir():
        raise BadRequest(f"python.index_url {index_url!r} is not a folder in your files", code="invalid_template")
    return str(folder)


# --- create / read / delete --------------------------------------------------------------------

def _required(inp: TemplateInput) -> None:
    for key, value in (("name", inp.name), ("yaml", inp.yaml), ("startCommand", inp.start_command),
                       ("requestCpu", inp.request_cpu), ("requestMemory", inp.request_memory_mib)):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise BadRequest(f"{key} is required", code="invalid_template")
    if not 0 < float(inp.request_cpu) <= 1024:
        raise BadRequest("requestCpu must be in (0, 1024]", code="invalid_template")
    if not 0 < int(inp.request_memory_mib) <= 1024**3:
        raise BadRequest("requestMemory (MiB) must be positive", code="invalid_template")
    if len(inp.name) > 255:
        raise BadRequest("name is longer than 255 characters", code="invalid_template")


def create_template(session: Session, settings: Settings, principal: Principal, inp: TemplateInput) -> ServiceTemplateModel:
    for key, value in inp.unsupported.items():
        if value not in (None, "", [], {}):
            raise BadRequest(f"{key}: {UNSUPPORTED_REASONS.get(key, 'not supported')}", code="unsupported_field")
    if inp.conda_version:
        raise BadRequest(f"condaVersion: {UNSUPPORTED_REASONS['condaVersion']}", code="unsupported_field")
    _required(inp)
    if (inp.type or "Endpoint") not in TYPES:
        raise BadRequest(f"type {inp.type!r} is not supported: only Endpoint (an HTTP service behind "
                         "/serving/<service>/) is deployed", code="unsupported_type")
    if inp.support_distributed:
        raise BadRequest("supportDistributed: a template service runs one process per replica; distributed "
                         "inference across replicas is not supported", code="unsupported_field")
    if inp.system and not principal.is_admin:
        raise Forbidden("only an admin can add a system template")
    spec = parse_template_yaml(inp.yaml)
    missing = missing_distro_packages(spec["distro"])
    if missing:
        raise BadRequest(f"distro packages not installed on this node: {', '.join(missing)} (the platform does "
                         "not install distro packages; ask an admin or remove them from yaml distro.packages)",
                         code="distro_package_missing")
    if inp.gpu_compute_capability:
        if not nodes_with_capability(session, inp.gpu_compute_capability):
            raise BadRequest(f"no node has a GPU with compute capability >= {inp.gpu_compute_capability}",
                             code="no_matching_node")
    if inp.python_version and not PY_VERSION.match(inp.python_version):
        raise BadRequest(f"pythonVersion {inp.python_version!r} is not a version like 3.11 or 3.11.7",
                         code="invalid_template")
    if inp.python_version and runtimes.find_python(settings, inp.python_version) is None:
        raise BadRequest(f"python {inp.python_version} is not installed on this platform (the server runs "
                         f"{platform.python_version()}; omit pythonVersion to use it)", code="python_unavailable")
    install_rel = ""
    if inp.install_path:
        install_dir = resolve_user_path(settings, principal.id, inp.install_path)
        if not install_dir.is_dir():
            raise BadRequest(f"installPath {inp.install_path!r} is not a folder in your files", code="invalid_path")
        install_rel = str(install_dir.relative_to(resolve_user_path(settings, principal.id, "")))
    requirements = list(spec["python"]["requirements"])
    if spec["python"]["requirements_txt"]:
        if not inp.install_path:
            raise BadRequest("yaml python.requirements_txt is relative to installPath: set installPath",
                             code="invalid_template")
        txt = resolve_user_path(settings, principal.id, f"{install_rel}/{spec['python']['requirements_txt']}")
        if not txt.is_file():
            raise BadRequest(f"requirements file {spec['python']['requirements_txt']} not found in installPath",
                             code="invalid_template")
        requirements += parse_requirements_txt(txt.read_text(errors="replace"))
    spec["python"]["resolved_requirements"] = _check_requirements(requirements)
    spec["python"]["index_url"] = _index_in_user_files(settings, principal, spec["python"]["index_url"])
    images = _resolve_images(session, principal, inp.architecture_images)
    model_ids = [models_svc.get_model(session, principal, str(m)).id for m in inp.model_ids]
    existing = session.scalar(select(ServiceTemplateModel).where(ServiceTemplateModel.owner_id == principal.id,
                                                                ServiceTemplateModel.name == inp.name))
    if existing is not None:
        raise Conflict(f"you already have a template named {inp.name!r}", code="name_taken")
    row = ServiceTemplateModel(
        owner_id=principal.id, name=inp.name.strip(), description=inp.description or "", yaml=inp.yaml, spec=spec,
        request_cpu=float(inp.request_cpu), request_memory_mib=int(inp.request_memory_mib),
        install_path=install_rel, start_command=inp.start_command.strip(),
        gpu_compute_capability=inp.gpu_compute_capability or "", python_version=inp.python_version or "",
        type=inp.type or "Endpoint", framework=inp.framework or "", source=inp.source or "",
        model_center_uuid=inp.model_center_uuid or "", support_distributed=False, is_public=bool(inp.system),
        images=images, model_ids=model_ids)
    if inp.resource_uuid:
        if not _is_id(inp.resource_uuid) or session.get(ServiceTemplateModel, inp.resource_uuid) is not None:
            raise BadRequest("resourceUuid must be 32 lowercase hex characters not used by another template",
                             code="invalid_template")
        row.id = inp.resource_uuid
    env = env_spec_of(spec, requirements, row.python_version, f"template {row.name}")
    row.env_key = env.key if env else ""
    session.add(row)
    session.flush()
    if env is not None:  # start now so a deploy finds it ready; failures land in its status
        runtimes.start_env_prepare(settings, env, key=f"template:{row.id}")
    return row


def _is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def get_template(session: Session, principal: Principal, ref: str) -> ServiceTemplateModel:
    """By id or name (own first, then a unique visible system one); 404 when not visible."""
    if _is_id(ref or "") and session.get(ServiceTemplateModel, ref) is not None:
        return get_visible(session, ServiceTemplateModel, ref, principal, what="template")
    return pick_by_name(session, ServiceTemplateModel, ref, principal, what="template")


def list_templates(session: Session, principal: Principal, *, page: int = 1, page_size: int = 20):
    stmt = visible(select(ServiceTemplateModel), ServiceTemplateModel, principal).order_by(
        ServiceTemplateModel.created_at.desc(), ServiceTemplateModel.id)
    return paginate(session, stmt, page=page, page_size=page_size)


def delete_template(session: Session, principal: Principal, ref: str) -> None:
    t = get_template(session, principal, ref)
    get_owned(session, ServiceTemplateModel, t.id, principal, what="template")
    session.delete(t)


def template_env_status(settings: Settings, t: ServiceTemplateModel) -> dict:
    env = template_env_spec(t)
    if env is None:
        return {"state": "ready", "requirements": []}
    st = runtimes.env_status(settings, env)
    return {k: st[k] for k in ("state", "progress", "size_bytes", "error", "log_tail", "path") if k in st}


def template_view(settings: Settings, t: ServiceTemplateModel) -> dict:
    return {"id": t.id, "name": t.name, "description": t.description, "owner_id": t.owner_id,
            "public": t.is_public, "type": t.type, "yaml": t.yaml, "spec": t.spec,
            "request_cpu": t.request_cpu, "request_memory_mib": t.request_memory_mib,
            "install_path": t.install_path, "start_command": t.start_command,
            "gpu_compute_capability": t.gpu_compute_capability or None, "python_version": t.python_version or None,
            "framework": t.framework, "source": t.source, "model_center_uuid": t.model_center_uuid or None,
            "images": t.images, "model_ids": t.model_ids, "environment": template_env_status(settings, t),
            "created_at": t.created_at, "updated_at": t.updated_at}


def _zstack_time(dt) -> str | None:
    return dt.strftime("%b %d, %Y %I:%M:%S %p") if dt else None


def inventory(t: ServiceTemplateModel) -> dict:
    """The seed's inventory (ZStack ModelServiceInventory)."""
    return {
        "uuid": t.id, "name": t.name, "description": t.description, "readme": None, "yaml": t.yaml,
        "requestCpu": int(t.request_cpu) if float(t.request_cpu).is_integer() else t.request_cpu,
        "requestMemory": t.request_memory_mib, "modelCenterUuid": t.model_center_uuid or None, "type": t.type,
        "framework": t.framework or None, "source": t.source or None, "size": None, "system": t.is_public,
        "hasNewVersion": False, "gpuComputeCapability": t.gpu_compute_capability or None,
        "installPath": t.install_path or None, "pythonVersion": t.python_version or None, "condaVersion": None,
        "version": "1", "startCommand": t.start_command, "containerCommand": None, "containerArgs": None,
        "supportDistributed": t.support_distributed,
        "cpuArchitectures": sorted({i["arch"].upper() for i in t.images}),
        "vendorToSpecUuidsMap": None,
        "modelServiceRefs": [{"modelUuid": m, "modelServiceUuid": t.id} for m in t.model_ids],
        "modelServiceImages": [{"cpuArchitecture": i["arch"].upper(), i["field"]: i["ref"],
                                "imageUuid": i["image_version_id"]} for i in t.images],
        "createDate": _zstack_time(t.created_at), "lastOpDate": _zstack_time(t.updated_at),
    }

