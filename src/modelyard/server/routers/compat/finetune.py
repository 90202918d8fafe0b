"""Seed 000 §4 (fine-tuning tasks) and §5 (pre-training tasks) at their exact paths, in the RETURN
envelope {"returnCode", "success", "message", "data"}.

    POST /kernel/fineTune/createLlmFineTuneTask          CreateTaskBO -> the task (isPretrain 0/1)
    POST /kernel/fineTune/listLlmFineTuneTask            {isPretrain,pageNum,pageSize,status,taskName,userId}
    POST /kernel/fineTune/queryLlmFineTuneTaskDetail?taskId=
    POST /kernel/fineTuneManage/listFineTuneTaskManage   the model versions tasks produced

Mapping of CreateTaskBO onto a job (services/jobs.py does the rest):
- command / commands / mpiCommand present -> a custom job (the user's code, image env applied);
  otherwise the platform trainer: isPretrain 1 -> pre-training, else fine-tuning with
  fineTuneStrategy (LoRA | FineTune).
- model: modelVersionId, else modelId (+ modelVersion), else originModelDir (a folder in the
  user's files). data: inputType dataset (datasetVersionId / dataSetName) or local (inputDir,
  default Data/ with train/ and validate/).
- hyperparameters: commonHyperParameters / fineTuneHyperParameters (override by name) on top of
  `hyperparameter` (a JSON config), `profilePath`, or Config/<Strategy>/config.json.
- resource[]: nodeType master|worker, numbers (replicas), cpuNumber, memory (GiB),
  gpuResource {gpuNum, gpuMem (GiB), gpuShare, migRes, gpuCores}.
- priority: a number, or high/medium/low; isUrgentTask: 1/true/yes jumps the queue.
- variable[]: env vars, as {"name": k, "value": v} or {k: v}. workingDir: in the user's files.
- extensions: resume (continue from the newest checkpoint in checkPointDir) and, with it,
  taskId (resume that failed/cancelled task as a new attempt instead of creating one).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from pydantic import ValidationError

from modelyard.core.errors import BadRequest
from modelyard.core.strategies import seed_name
from modelyard.core.units import gib_to_mib, mib_to_gib
from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.routers.compat.envelope import RETURN, compat_router, ok
from modelyard.server.schemas.common import MAX_PAGE, MAX_PAGE_SIZE
from modelyard.server.schemas.jobs import GpuSpec, JobSubmit, RoleSpec
from modelyard.server.schemas.seed.finetune import (  # noqa: F401  (re-exported: the seed's bodies)
    CreateTaskBO,
    GPUResource,
    HyperParameter,
    ListBody,
    ResourceItem,
)
from modelyard.server.services import jobs as svc

router = compat_router(RETURN, tags=["seed §4-5 fine-tune and pre-train tasks"])

_STATUS = {"pending": "pending", "queued": "queued", "queuing": "queued", "waiting": "queued",
           "starting": "starting", "creating": "starting", "running": "running", "succeeded": "succeeded",
           "success": "succeeded", "completed": "succeeded", "finished": "succeeded", "failed": "failed",
           "error": "failed", "cancelled": "cancelled", "canceled": "cancelled", "stopped": "cancelled",
           "terminated": "cancelled"}
_PRIORITY = {"high": 10, "高": 10, "urgent": 20, "medium": 0, "normal": 0, "中": 0, "low": -10, "低": -10}
_TRUE = {"1", "true", "yes", "y", "是", "urgent", "on"}


# --- mapping -----------------------------------------------------------------------------------

def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in _TRUE if v not in (None, "") else False


def _pretrain(v: Any) -> bool | None:
    if v in (None, ""):
        return None
    try:
        return int(v) == 1
    except (TypeError, ValueError):
        raise BadRequest("isPretrain must be 0 or 1", code="invalid_request") from None


def _priority(v: Any) -> int:
    if v in (None, ""):
        return 0
    s = str(v).strip().lower()
    if s in _PRIORITY:
        return _PRIORITY[s]
    try:
        return max(-1000, min(1000, int(float(s))))
    except ValueError:
        raise BadRequest(f"priority {v!r} is not a number or high/medium/low", code="invalid_request") from None


def _env(variables: list[dict[str, Any]] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in variables or []:
        if not item:
            continue
        if "name" in item and "value" in item:
            k, v = item.get("name"), item.get("value")
            if k:
                env[str(k)] = "" if v is None else str(v)
        elif "key" in item and "value" in item:
            if item.get("key"):
                env[str(item["key"])] = "" if item["value"] is None else str(item["value"])
        else:
            for k, v in item.items():
                env[str(k)] = "" if v is None else str(v)
    bad = [k for k in env if not k or not (k[0].isalpha() or k[0] == "_") or not all(c.isalnum() or c == "_" for c in k)]
    if bad:
        raise BadRequest(f"invalid environment variable name(s): {', '.join(map(repr, bad))}", code="invalid_request")
    return env


def _roles(resource: list[ResourceItem] | None) -> list[RoleSpec]:
    roles: dict[str, RoleSpec] = {}
    for item in resource or []:
        role = (item.nodeType or "master").strip().lower() or "master"
        if role not in ("master", "worker"):
            raise BadRequest(f"nodeType must be master or worker, not {item.nodeType!r}", code="invalid_resource")
        replicas = item.numbers if item.numbers else (1 if role == "master" else 0)
        if role == "worker" and replicas <= 0:
            continue
        kw: dict[str, Any] = {"role": role, "replicas": replicas}
        if item.cpuNumber:
            kw["cpu"] = item.cpuNumber
        if item.memory:
            kw["memory_mib"] = gib_to_mib(item.memory)
        g = item.gpuResource
        if g is not None:
            kw["gpu"] = GpuSpec(num=g.gpuNum or 0, mem_gib=g.gpuMem or None, share=g.gpuShare or None,
                                mig=g.migRes or None, cores=g.gpuCores or None)
        if role in roles:
            raise BadRequest(f"resource lists nodeType {role} twice", code="invalid_resource")
        roles[role] = RoleSpec(**kw)
    return list(roles.values())


def _hp_list(items: list[HyperParameter] | None) -> list[dict[str, Any]] | None:
    if not items:
        return None
    out = [{"name": h.name, "value": h.value} for h in items if (h.name or "").strip()]
    return out or None


def _refuse_unsupported(bo: CreateTaskBO) -> None:
    """Fields this platform cannot honour: refused, never silently dropped."""
    def no(field: str, why: str) -> None:
        raise BadRequest(f"{field}: {why}", code="unsupported_field", details={"field": field})

    if _flag(bo.rdma):
        no("rdma", "no high-performance (RDMA) network on this platform; leave it off")
    if (bo.resourceName or "").strip():
        no("resourceName", "names an RDMA resource, and there is no RDMA network on this platform")
    if str(bo.storageMedium or "").strip() not in ("", "1201"):
        no("storageMedium", f"{bo.storageMedium} is not available: data comes from your files (1201, local); "
                            "object storage (1203) is not supported")
    if (bo.devices or "").strip():
        no("devices", "pick GPUs with resource[].gpuResource (gpuNum / gpuShare / migRes); devices are "
                      "assigned by the scheduler")
    framework = (bo.llmTrainFramework or "").strip()
    if framework and framework.lower() != "pytorch":
        no("llmTrainFramework", f"{framework} is not available: the training framework is PyTorch")


def _labels(bo: CreateTaskBO) -> dict[str, str]:
    """Facts the task keeps and shows back (seed type / createWay / algorithmId / resourceType / podDelete)."""
    out = {"type": bo.type, "createWay": bo.createWay, "algorithmId": bo.algorithmId,
           "resourceType": bo.resourceType, "llmTrainFramework": bo.llmTrainFramework,
           "podDelete": None if bo.podDelete is None else str(bo.podDelete), "zoneName": bo.zoneName}
    return {k: str(v) for k, v in out.items() if v not in (None, "")}


def to_submit(bo: CreateTaskBO, kind_defaults: dict[str, Any] | None = None) -> JobSubmit:
    _refuse_unsupported(bo)
    is_pretrain = bool(_pretrain(bo.isPretrain))
    custom = bool((bo.command or "").strip() or [c for c in bo.commands or [] if c.strip()] or (bo.mpiCommand or "").strip())
    kind = "custom" if custom else ("pretrain" if is_pretrain else "finetune")
    model = bo.modelVersionId or (f"{bo.modelId}:{bo.modelVersion}" if bo.modelId and bo.modelVersion else bo.modelId)
    config = None
    common = _hp_list(bo.commonHyperParameters)
    finetune = _hp_list(bo.fineTuneHyperParameters)
    if bo.hyperparameter not in (None, "", [], {}):
        hpv = bo.hyperparameter
        if isinstance(hpv, str):
            try:
                hpv = json.loads(hpv)
            except ValueError:
                raise BadRequest("hyperparameter is not valid JSON", code="invalid_hyperparameter") from None
        if isinstance(hpv, dict) and ("commonHyperParameters" in hpv or "fineTuneHyperParameters" in hpv):
            config = hpv
        elif isinstance(hpv, dict | list):
            config = {"commonHyperParameters": hpv}
    input_type = (bo.inputType or "").strip().lower() or None
    dataset = bo.datasetVersionId or bo.dataSetName
    return JobSubmit(
        name=bo.name or bo.jobName, description=bo.describe or "", kind=kind, priority=_priority(bo.priority),
        is_urgent=_flag(bo.isUrgentTask), roles=_roles(bo.resource), image=bo.image or None,
        command=bo.command or None, commands=bo.commands or None, mpi_command=bo.mpiCommand or None,
        env=_env(bo.variable), working_dir=bo.workingDir or None, model=model or None,
        model_dir=(bo.originModelDir or None) if not model else None,
        dataset=dataset or None, input_type=input_type, input_dir=bo.inputDir or None,
        strategy=bo.fineTuneStrategy or None, config=config, profile_path=bo.profilePath or None,
        common_hyperparameters=common, finetune_hyperparameters=finetune,
        checkpoint_dir=bo.checkPointDir or None, output_dir=bo.outputDir or None,
        output_model_name=bo.outputModelName or None, resume=_flag(bo.resume),
        node_names=[n for n in bo.nodeName or [] if n] or None,
        resource_group=bo.zoneId or bo.resourceGroupKey or bo.zoneName or None, labels=_labels(bo))


def _errors(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


# --- views -------------------------------------------------------------------------------------

def _fmt(ts: datetime | None) -> str | None:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if ts else None


def _run_time(job: Any) -> str | None:
    secs = svc.run_seconds(job)
    if secs is None:
        return None
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return (f"{h}时" if h else "") + f"{m}分{s}秒"


def _resource_view(roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in roles:
        g = r.get("gpu") or {}
        out.append({"nodeType": r["role"], "numbers": r["replicas"], "cpuNumber": r["cpu"],
                    "memory": mib_to_gib(r["memory_mib"]),
                    "gpuResource": {"gpuNum": g.get("num", 0), "gpuMem": g.get("mem_gib"),
                                    "gpuShare": g.get("share") or "none", "migRes": g.get("mig") or "",
                                    "gpuCores": g.get("cores")}})
    return out


def _hp_view(d: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [{"name": k, "value": "" if v is None else str(v), "description": ""} for k, v in (d or {}).items()]


def task_view(job: Any, user_name: str | None = None) -> dict[str, Any]:
    spec = job.spec or {}
    req = spec.get("request") or {}
    model = spec.get("model") or {}
    data = spec.get("data") or {}
    given = (spec.get("config") or {}).get("given") or {}
    training = spec.get("training") or {}
    labels = spec.get("labels") or {}
    cmd = req.get("command")
    return {
        "id": job.id, "taskId": job.id, "name": job.name, "jobName": job.name, "describe": job.description,
        "status": job.state, "isPretrain": 1 if job.is_pretrain else 0, "kind": job.kind,
        "createWay": labels.get("createWay") or ("custom" if job.kind == "custom" else "system"),
        "type": labels.get("type") or "PyTorch", "algorithmId": labels.get("algorithmId"),
        "resourceType": labels.get("resourceType"), "podDelete": labels.get("podDelete"),
        "llmTrainFramework": "PyTorch", "fineTuneStrategy": seed_name(job.strategy, job.is_pretrain),
        "nodeName": (spec.get("placement") or {}).get("node_names") or [],
        "zoneId": (spec.get("placement") or {}).get("group"),
        "modelId": model.get("model_id"), "modelVersionId": job.model_version_id, "modelVersion": model.get("version"),
        "originModelDir": model.get("path") if not job.model_version_id else None,
        "datasetVersionId": job.dataset_version_id, "dataSetName": req.get("dataset"),
        "inputType": data.get("input_type"), "inputDir": data.get("input_dir"),
        "image": (spec.get("image") or {}).get("ref"), "command": cmd if isinstance(cmd, str) else None,
        "commands": req.get("commands"), "mpiCommand": req.get("mpi_command"),
        "resource": _resource_view(spec.get("roles") or []),
        "commonHyperParameters": _hp_view(given.get("commonHyperParameters")),
        "fineTuneHyperParameters": _hp_view(given.get("fineTuneHyperParameters")),
        "hyperparameters": training.get("hyperparameters") or spec.get("hyperparameters"),
        "checkPointDir": spec.get("checkpoint_dir"), "outputDir": spec.get("user_output_dir") or spec.get("output_dir"),
        "priority": job.priority, "isUrgentTask": "1" if job.is_urgent else "0",
        "userId": job.owner_id, "userName": user_name,
        "createTime": _fmt(job.created_at), "startTime": _fmt(job.running_at), "endTime": _fmt(job.finished_at),
        "runTime": _run_time(job), "attempt": job.attempt, "outputModelVersionId": job.output_model_version_id,
        "errorMessage": job.error, "waitingReason": job.waiting_reason if job.state == "queued" else None,
        "progress": job.progress or {}, "metrics": (job.result or {}).get("metrics"),
    }


def _owner_filter(principal: Principal, user_id: Any, user_name: str | None, session) -> str | None:
    if user_id not in (None, ""):
        return principal.ensure_acting_as(user_id)
    if user_name:
        uid = svc.user_id_by_name(session, user_name)
        if uid is None:
            return "-"  # matches nothing
        return principal.ensure_acting_as(uid)
    return None


def _page(body: ListBody) -> tuple[int, int]:
    """The seed's paging is lenient: out-of-range numbers are clamped, not refused."""
    return min(max(body.pageNum or 1, 1), MAX_PAGE), min(max(body.pageSize or 10, 1), MAX_PAGE_SIZE)


def _status(s: str | None) -> list[str] | None:
    if not s:
        return None
    st = _STATUS.get(s.strip().lower())
    if st is None:
        raise BadRequest(f"unknown status {s!r}", code="invalid_request", details={"valid": sorted(set(_STATUS.values()))})
    return [st]


def _task_filters(principal: Principal, body: ListBody, session) -> dict[str, Any]:
    return {"states": _status(body.status),
            "owner_id": _owner_filter(principal, body.userId, body.userName, session),
            "is_pretrain": _pretrain(body.isPretrain), "task_name": body.taskName}


# --- routes ------------------------------------------------------------------------------------

@router.post("/kernel/fineTune/createLlmFineTuneTask", summary="Seed §4.1 / §5.1: create a fine-tune or pre-train task")
async def create_task(request: Request, ctx: CtxDep, principal: UserDep):
    """Seed-compatible: submits a fine-tune (fineTuneStrategy LoRA or FineTune) or pre-train task; answered in the seed's envelope."""
    try:
        raw = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON CreateTaskBO", code="invalid_request") from None
    if isinstance(raw, dict) and isinstance(raw.get("createTaskBO"), dict):
        raw = raw["createTaskBO"]
    if not isinstance(raw, dict):
        raise BadRequest("the body must be a JSON CreateTaskBO", code="invalid_request")
    try:
        bo = CreateTaskBO.model_validate(raw)
        req = None if (_flag(bo.resume) and bo.taskId) else to_submit(bo)
    except ValidationError as exc:
        raise BadRequest(_errors(exc), code="invalid_request", details=jsonable_encoder(exc.errors())) from None

    def work():
        owner = principal.ensure_acting_as(bo.userId)
        with session_scope(ctx.sessions) as session:
            if req is None:
                job = svc.resume_job(session, ctx, principal=principal, job_id=bo.taskId)
            else:
                job = svc.submit_seed_task(session, ctx, principal=principal, req=req, owner_id=owner,
                                           is_pretrain=bool(_pretrain(bo.isPretrain)))
            session.flush()
            return task_view(job, svc.owner_names(session, {job.owner_id}).get(job.owner_id))

    return ok(RETURN, await run_in_threadpool(work))


@router.post("/kernel/fineTune/listLlmFineTuneTask", summary="Seed §4.2 / §5.2: page tasks")
def list_tasks(body: ListBody, ctx: CtxDep, principal: UserDep):
    """Seed-compatible: one page of fine-tune / pre-train tasks with their state and resources."""
    page, size = _page(body)
    with session_scope(ctx.sessions, readonly=True) as session:
        items, total = svc.list_seed_tasks(session, principal, page=page, page_size=size,
                                           **_task_filters(principal, body, session))
        names = svc.owner_names(session, {j.owner_id for j in items})
        data = {"total": total, "pageNum": page, "pageSize": size,
                "list": [task_view(j, names.get(j.owner_id)) for j in items]}
    return ok(RETURN, data)


@router.post("/kernel/fineTune/queryLlmFineTuneTaskDetail", summary="Seed §4.3 / §5.3: task detail (?taskId=)")
async def task_detail(request: Request, ctx: CtxDep, principal: UserDep, taskId: str | None = None):
    """Seed-compatible: one task's full detail (resources, hyperparameters, state, output model)."""
    task_id = taskId
    if not task_id:
        ctype = request.headers.get("content-type", "")
        if "form" in ctype:
            task_id = (await request.form()).get("taskId")
        elif "json" in ctype:
            try:
                body = await request.json()
                task_id = body.get("taskId") if isinstance(body, dict) else None
            except ValueError:
                task_id = None
    if not task_id:
        raise BadRequest("taskId is required", code="invalid_request")

    def work():
        with session_scope(ctx.sessions, readonly=True) as session:
            job = svc.get_job(session, principal, str(task_id))
            view = task_view(job, svc.owner_names(session, {job.owner_id}).get(job.owner_id))
            detail = svc.job_detail(session, job)
            view.update(replicas=detail["replicas"], allocations=detail["allocations"], events=detail["events"],
                        spec=job.spec)
            return view

    return ok(RETURN, await run_in_threadpool(work))


@router.post("/kernel/fineTuneManage/listFineTuneTaskManage",
             summary="Seed §4.4 / §5.4: the model versions produced by tasks")
def list_task_models(body: ListBody, ctx: CtxDep, principal: UserDep):
    """Seed-compatible: the model versions the caller's tasks produced, with their task and base."""
    page, size = _page(body)
    with session_scope(ctx.sessions, readonly=True) as session:
        return ok(RETURN, _task_models(session, principal, body, page, size))


def _task_models(session, principal: Principal, body: ListBody, page: int, size: int) -> dict:
    items, total = svc.list_seed_tasks(session, principal, page=page, page_size=size, with_output=True,
                                       **_task_filters(principal, body, session))
    names = svc.owner_names(session, {j.owner_id for j in items})
    versions, models = svc.output_models(session, [j.output_model_version_id for j in items])
    out = []
    for j in items:
        v = versions.get(j.output_model_version_id)
        m = models.get(getattr(v, "model_id", None))
        training = (j.spec or {}).get("training") or {}
        out.append({
            "taskId": j.id, "taskName": j.name, "status": j.state, "isPretrain": 1 if j.is_pretrain else 0,
            "fineTuneStrategy": seed_name(j.strategy, j.is_pretrain), "userId": j.owner_id, "userName": names.get(j.owner_id),
            "modelVersionId": j.output_model_version_id, "modelId": getattr(v, "model_id", None),
            "modelName": getattr(m, "name", None), "modelVersion": getattr(v, "version", None),
            "format": getattr(v, "format", None), "path": getattr(v, "path", None),
            "baseModelVersionId": j.model_version_id, "datasetVersionId": j.dataset_version_id,
            "hyperparameters": training.get("hyperparameters"), "metrics": (j.result or {}).get("metrics"),
            "createTime": _fmt(getattr(v, "created_at", None) or j.finished_at), "endTime": _fmt(j.finished_at),
        })
    return {"total": total, "pageNum": page, "pageSize": size, "list": out}
