"""Seed 000 §7 (inference services) at their exact paths, in the DATA envelope
{"code", "success", "message", "data"}.

    POST /model/modelServer/createModelInferenceServer      ModelServerDTO -> create and start (§7.1)
    POST /model/modelServer/createModelServer               ModelServerDTO -> save only (§7.2)
    POST /model/modelServer/findModelServerPageList         {pageNum, pageSize, queryCriteria{createUser, name}}
    POST /model/modelServer/findModelServerById             {"id"} (or ?id=)
    POST /model/modelServerVersion/findModelServerVersionById   {"id"} (or ?id=)

Mapping of a ModelServerVersion onto a VersionSpec (services/serving does the rest):
- aiApplicationVersionId: the model version served by the platform runtime (auto: vLLM when
  prepared, else transformers), on the replica's socket; imagePorts is not used then.
- command (non-empty) or customImageFlag 1 with image: the user's own server. The command runs in
  the image's root filesystem (or on the platform runtime without an image) and must serve HTTP on
  the first of imagePorts; the model version, when given, is mounted at /model.
- envs / volumes: JSON strings ([{"NAME": "value"}], [{"src": folder of your files, "dst": path}]).
- cpu: cores; memory: GiB (as the seed's §4 resources); gpu, gpuShare ("none" = whole GPUs),
  gpuMem (GiB), gpuCores, migRes: as for jobs; resourceGroupId / Key / Name: the replicas' nodes.
- replica (default predictMinReplicas or 1), predictMinReplicas / predictMaxReplicas, metric (1 rps,
  2 concurrency, 3 GPU) and monitorThreshold: stored and shown; the autoscaler comes with the
  gateway, so the replica count stays `replica` until then (the response's message says so).
- rate: traffic percent (versions sum to 100; none given: split evenly). reqMethod: rest; grpc is
  refused. Refused with 400 unsupported_field: rates[] (give each version's rate), volumePath (use
  volumes), hyperParameterList other than null/[] (serving takes generation parameters per
  request), modelServerId on create (set by the server), any field the seed does not declare.
- createUser / userName: the caller, unless the caller is admin (403 otherwise).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from pydantic import ValidationError

from modelyard.core.errors import BadRequest, Forbidden
from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.routers.compat.envelope import DATA, compat_router, ok
from modelyard.server.schemas.common import MAX_PAGE, MAX_PAGE_SIZE
from modelyard.server.schemas.seed.serving import ModelServerDTO, ModelServerPageBody, ModelServerVersion
from modelyard.server.schemas.serving import ServiceCreate, VersionSpec, VolumeSpec
from modelyard.server.services import jobs as jobs_svc
from modelyard.server.services import serving as svc

router = compat_router(DATA, tags=["seed §7 inference services"])

AUTOSCALE_NOTE = ("predictMinReplicas/predictMaxReplicas, metric and monitorThreshold are stored; autoscaling "
                  "comes with the gateway, so each version runs `replica` replicas until then")
_STATUS = {"saved": 0, "deploying": 1, "running": 2, "degraded": 3, "stopping": 4, "stopped": 5, "failed": 6}


def _unsupported(field: str, why: str) -> BadRequest:
    return BadRequest(f"{field}: {why}", code="unsupported_field", details={"field": field})


def _envs(text: Any) -> dict[str, str]:
    items = svc.json_list(text, "envs")
    if items is None:
        return {}
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise BadRequest("envs must be a JSON list of {name: value} objects", code="invalid_request")
    env: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise BadRequest("envs must be a JSON list of {name: value} objects", code="invalid_request")
        if "name" in item and "value" in item:
            env[str(item["name"])] = "" if item["value"] is None else str(item["value"])
        else:
            env.update({str(k): "" if v is None else str(v) for k, v in item.items()})
    return env


def _volumes(text: Any) -> list[VolumeSpec]:
    items = svc.json_list(text, "volumes")
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadRequest('volumes must be a JSON list of {"src", "dst"} objects', code="invalid_request")
    try:
        return [VolumeSpec(src=str(i.get("src", "")), dst=str(i.get("dst", ""))) for i in items]
    except ValidationError as exc:
        raise BadRequest(f"volumes: {exc.errors()[0]['msg']}", code="invalid_request") from None


def to_version(v: ModelServerVersion, *, creating: bool) -> VersionSpec:
    if v.model_extra:
        raise _unsupported(", ".join(sorted(v.model_extra)), "not a field of ModelServerVersion")
    if v.rates:
        raise _unsupported("rates", "give each version's `rate` (percent; the versions sum to 100)")
    if v.volumePath:
        raise _unsupported("volumePath", 'use volumes: [{"src": a folder of your files, "dst": a path inside}]')
    hp = v.hyperParameterList
    if hp not in (None, "", "null", "[]", []):
        raise _unsupported("hyperParameterList", "a service takes generation parameters per request "
                                                 "(temperature, max_tokens...), not hyperparameters")
    if creating and v.modelServerId:
        raise _unsupported("modelServerId", "set by the server")
    if v.reqMethod and v.reqMethod.strip().lower() == "grpc":
        raise _unsupported("reqMethod", "grpc is not served; use rest")
    try:
        threshold = float(v.monitorThreshold) if v.monitorThreshold not in (None, "") else 100.0
    except ValueError:
        raise BadRequest(f"monitorThreshold {v.monitorThreshold!r} is not a number", code="invalid_request") from None
    custom = v.customImageFlag == 1
    if custom and not v.image:
        raise BadRequest("customImageFlag 1 needs an image", code="invalid_request")
    command = (v.command or "").strip()
    runtime = "image" if (custom or command) else "auto"
    if v.replica is not None and v.replica < 0 or (v.predictMinReplicas or 0) < 0 or (v.predictMaxReplicas or 0) < 0:
        raise BadRequest("replica counts cannot be negative", code="invalid_replicas")
    try:
        return VersionSpec(
            model=v.aiApplicationVersionId or None, runtime=runtime, image=v.image or None, command=command,
            image_ports=v.imagePorts or "", env=_envs(v.envs), volumes=_volumes(v.volumes),
            cpu=v.cpu if v.cpu else 1.0, memory_mib=int(round((v.memory if v.memory else 2) * 1024)),
            gpu=v.gpu or 0, gpu_share=v.gpuShare or "none", gpu_mem=v.gpuMem, gpu_cores=v.gpuCores,
            mig_res=v.migRes or "",
            resource_group=v.resourceGroupId or v.resourceGroupKey or v.resourceGroupName or None,
            replicas=v.replica or None, min_replicas=v.predictMinReplicas or None,
            max_replicas=v.predictMaxReplicas or None, metric=v.metric or 1, monitor_threshold=threshold,
            rate=v.rate, req_method=(v.reqMethod or "rest").strip().lower())
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e.get("loc", ()))
        raise BadRequest(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")), code="invalid_request") from None


def _acting(principal: Principal, *values: Any) -> str:
    owner = principal.id
    for v in values:
        if v not in (None, ""):
            owner = principal.ensure_acting_as(v)
            if owner != principal.id and not principal.is_admin:
                raise Forbidden("createUser is not the calling user", code="not_caller")
    return owner


async def _create(request: Request, ctx, principal: Principal, *, start: bool):
    try:
        raw = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON ModelServerDTO", code="invalid_request") from None
    if isinstance(raw, dict) and isinstance(raw.get("modelServerDTO"), dict):
        raw = raw["modelServerDTO"]
    try:
        dto = ModelServerDTO.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise BadRequest(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}", code="invalid_request",
                         details=jsonable_encoder(exc.errors())) from None
    if dto.model_extra:
        raise _unsupported(", ".join(sorted(dto.model_extra)), "not a field of ModelServerDTO")
    ms = dto.modelServer
    if ms is None or not (ms.name or "").strip():
        raise BadRequest("modelServer.name is required", code="invalid_request")
    if ms.model_extra:
        raise _unsupported(", ".join(sorted(ms.model_extra)), "not a field of ModelServer")
    if not dto.modelServerVersions:
        raise BadRequest("modelServerVersions needs at least one version", code="invalid_request")
    owner = _acting(principal, ms.createUser, *(v.createUser for v in dto.modelServerVersions))
    versions = [to_version(v, creating=True) for v in dto.modelServerVersions]
    try:
        req = ServiceCreate(name=ms.name.strip(), description=ms.description or "", path=ms.path or "",
                            versions=versions, start=start)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise BadRequest(f"modelServer.{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}",
                         code="invalid_request") from None
    raws = [v.model_dump(exclude_none=True) for v in dto.modelServerVersions]

    def work():
        with session_scope(ctx.sessions) as s:
            names = {n for n in (ms.userName, *(v.userName for v in dto.modelServerVersions)) if n}
            if names and not principal.is_admin:
                owner_name = principal.name
                if any(n != owner_name for n in names):
                    raise Forbidden("userName is not the calling user", code="not_caller")
            one = svc.create_service(s, ctx, principal=principal, req=req, origin="seed", owner_id=owner,
                                     seed_versions=raws)
            s.flush()
            return server_view(s, ctx, one)

    data = await run_in_threadpool(work)
    return ok(DATA, data, message="created and deploying; " + AUTOSCALE_NOTE if start else "saved; " + AUTOSCALE_NOTE)


@router.post("/model/modelServer/createModelInferenceServer", summary="Seed §7.1: create and start a service")
async def create_and_start(request: Request, ctx: CtxDep, principal: UserDep):
    """Seed §7.1: create an inference service from a ModelServerDTO and deploy it (each field honoured or refused with a reason)."""
    return await _create(request, ctx, principal, start=True)


@router.post("/model/modelServer/createModelServer", summary="Seed §7.2: save a service without starting it")
async def create_saved(request: Request, ctx: CtxDep, principal: UserDep):
    """Seed §7.2: save a service from a ModelServerDTO without starting it."""
    return await _create(request, ctx, principal, start=False)


@router.post("/model/modelServer/findModelServerPageList", summary="Seed §7.3: page services")
def page_list(body: ModelServerPageBody, ctx: CtxDep, principal: UserDep):
    """Seed §7.3: page your services (queryCriteria.createUser must be you unless admin; name contains)."""
    page = min(max(body.pageNum or 1, 1), MAX_PAGE)
    size = min(max(body.pageSize or 10, 1), MAX_PAGE_SIZE)
    crit = body.queryCriteria
    owner = None
    if crit is not None and crit.createUser not in (None, ""):
        owner = str(crit.createUser)
        if owner != principal.id and not principal.is_admin:
            raise Forbidden("createUser is not the calling user", code="not_caller")
    with session_scope(ctx.sessions, readonly=True) as s:
        items, total = svc.list_services(s, principal, page=page, page_size=size,
                                         name=(crit.name or None) if crit else None, owner_id=owner)
        rows = [server_view(s, ctx, i, versions=False) for i in items]
    return ok(DATA, {"total": total, "pageNum": page, "pageSize": size, "list": rows})


async def _id_of(request: Request, id: str | None) -> str:
    if id:
        return id
    try:
        body = await request.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("id", "modelServerId", "modelServerVersionId", "versionId"):
            if body.get(key):
                return str(body[key])
    if isinstance(body, str) and body:
        return body
    raise BadRequest('give the id: {"id": "..."} or ?id=', code="invalid_request")


@router.post("/model/modelServer/findModelServerById", summary="Seed §7.4: one service")
async def find_by_id(request: Request, ctx: CtxDep, principal: UserDep, id: str | None = None):
    """Seed §7.4: one service with its versions and replicas, by {"id"} or ?id=."""
    ref = await _id_of(request, id)

    def work():
        with session_scope(ctx.sessions, readonly=True) as s:
            return server_view(s, ctx, svc.find_service(s, principal, ref))

    return ok(DATA, await run_in_threadpool(work))


@router.post("/model/modelServerVersion/findModelServerVersionById", summary="Seed §7.5: one service version")
async def find_version_by_id(request: Request, ctx: CtxDep, principal: UserDep, id: str | None = None):
    """Seed §7.5: one service version, by {"id"} or ?id=."""
    ref = await _id_of(request, id)

    def work():
        with session_scope(ctx.sessions, readonly=True) as s:
            one, ver = svc.find_version(s, principal, ref)
            detail = svc.service_detail(s, ctx, one)
            v = next(x for x in detail["versions"] if x["id"] == ver.id)
            return version_view(one, v, detail)

    return ok(DATA, await run_in_threadpool(work))


# --- shaping -----------------------------------------------------------------------------------------

def server_view(s, ctx, one, *, versions: bool = True) -> dict[str, Any]:
    d = svc.service_detail(s, ctx, one)
    names = jobs_svc.owner_names(s, {one.owner_id})
    out = {"id": one.id, "name": one.name, "description": one.description, "path": one.path,
           "createUser": one.owner_id, "userName": names.get(one.owner_id), "status": one.state,
           "statusCode": _STATUS.get(one.state), "createTime": one.created_at, "updateTime": one.updated_at,
           "accessAddress": d["access_address"], "modelNames": d["model_names"], "progress": d["progress"],
           "invocationTimes": d["invocations"], "failedTimes": d["failures"], "error": one.error,
           "readyReplicas": d["ready_replicas"], "desiredReplicas": d["desired_replicas"]}
    if versions:
        out["modelServerVersions"] = [version_view(one, v, d) for v in d["versions"]]
        out["replicas"] = d["replicas"]
    return out


def version_view(one, v: dict, detail: dict) -> dict[str, Any]:
    r, sc = v["resources"], v["scaling"]
    return {"id": v["id"], "modelServerId": one.id, "version": v["number"], "status": v["state"],
            "error": v["error"], "runtime": v["runtime"], "aiApplicationVersionId": v["model_version_id"],
            "image": v["image_version_id"], "customImageFlag": 1 if v["runtime"] == "image" and v["image_version_id"]
            else 0, "command": v["command"], "imagePorts": v["image_ports"], "envs": v["env"],
            "volumes": v["volumes"], "cpu": r["cpu"], "memory": r["memory_mib"] / 1024, "gpu": r["gpu"],
            "gpuShare": r["gpu_share"], "gpuMem": r["gpu_mem"], "gpuCores": r["gpu_cores"], "migRes": r["mig_res"],
            "resourceGroupId": r["resource_group"], "replica": sc["replicas"],
            "predictMinReplicas": sc["min_replicas"], "predictMaxReplicas": sc["max_replicas"],
            "metric": {"rps": 1, "concurrency": 2, "gpu": 3}.get(sc["metric"], sc["metric"]),
            "monitorThreshold": str(sc["monitor_threshold"]), "rate": v["rate"], "reqMethod": v["req_method"],
            "instances": v["instances"], "autoscaling": AUTOSCALE_NOTE, "seedFields": v["seed_fields"]}
