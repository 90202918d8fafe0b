"""Inference services: create (validate every version completely, nothing half-written), read,
start, stop, scale, versions, rates, delete. The reconciler (loop.py) turns what is asked here
into replicas; this module only changes the asked-for state, through the doors (states.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from modelyard.server.auth import Principal
from modelyard.server.db import paginate
from modelyard.server.orm.jobs import JobModel
from modelyard.server.orm.models import ModelVersionModel
from modelyard.server.orm.serving import ServiceModel, ServiceReplicaModel, ServiceVersionModel
from modelyard.server.orm.users import UserModel
from modelyard.server.schemas.serving import ServiceCreate, VersionSpec
from modelyard.server.services import events
from modelyard.server.services import jobs as jobs_svc
from modelyard.server.services.common import access
from modelyard.server.services.common.paths import resolve_user_path
from modelyard.server.services.common.refs import resolve_ref
from modelyard.server.services.serving import planning
from modelyard.server.services.serving.states import move_replica, move_service, move_version
from modelyard.server.settings import Settings

LIVE_REPLICA = ("pending", "starting", "ready", "draining")
SERVING_STATES = ("deploying", "running", "degraded")


def stage(session: Session, svc: ServiceModel, info: str, *, abnormal: bool = False,
          data: dict | None = None) -> None:
    """A deployment-stage or failure event in the service's event log (ModelArts' events)."""
    events.record(session, actor_id=None, kind="service.event", object_type="service", object_id=svc.id,
                  message=info, data={"event_type": "abnormal" if abnormal else "normal", **(data or {})})


# --- addressing ------------------------------------------------------------------------------------

def find_service(session: Session, principal: Principal, ref: str) -> ServiceModel:
    """A service by id, unique id prefix or name (services/common/refs, the house's one resolver);
    another user's service answers 404 (admins see all)."""
    return resolve_ref(session, ServiceModel, ref, principal, what="service")


def versions_of(session: Session, service_id: str) -> list[ServiceVersionModel]:
    return list(session.scalars(select(ServiceVersionModel).where(ServiceVersionModel.service_id == service_id)
                                .order_by(ServiceVersionModel.number)))


def replicas_of(session: Session, service_id: str, *, live_only: bool = False) -> list[ServiceReplicaModel]:
    stmt = select(ServiceReplicaModel).where(ServiceReplicaModel.service_id == service_id)
    if live_only:
        stmt = stmt.where(ServiceReplicaModel.state.in_(LIVE_REPLICA))
    return list(session.scalars(stmt.order_by(ServiceReplicaModel.created_at, ServiceReplicaModel.index)))


# --- validating a version ------------------------------------------------------------------------------

def _model_info(session: Session, mv: ModelVersionModel) -> dict[str, Any]:
    info: dict[str, Any] = {"version_id": mv.id, "path": mv.path, "format": mv.format or "hf"}
    if info["format"] == "peft":
        base = session.get(ModelVersionModel, mv.base_version_id) if mv.base_version_id else None
        if base is None:
            raise BadRequest(f"adapter {mv.id} has no base model version", code="unsupported_model_format")
        info["base_path"] = base.path
        info["base_version_id"] = base.id
    return info


def _resolve_model(session: Session, principal: Principal, ref: str) -> ModelVersionModel:
    from modelyard.server.services import models as models_svc

    mv = models_svc.resolve_model_version(session, principal, ref)
    if (mv.format or "hf") not in ("hf", "peft"):
        raise BadRequest(f"model version {mv.id} is in {mv.format} format; services run Hugging Face weights (hf) "
                         "or a PEFT adapter on them", code="unsupported_model_format")
    return mv


def _volumes(settings: Settings, owner_id: str, vols: list) -> list[dict[str, str]]:
    out = []
    for v in vols:
        src, dst = str(v.src), str(v.dst)
        if not dst.startswith("/") or ".." in Path(dst).parts or dst.rstrip("/") in ("", "/proc", "/dev", "/tmp"):
            raise BadRequest(f"volume dst {dst!r} must be an absolute path (not /, /proc, /dev, /tmp)",
                             code="invalid_path")
        host = resolve_user_path(settings, owner_id, src)  # refuses ../ and links out of the owner's files
        if not host.exists():
            raise BadRequest(f"volume src {src} is not in your files", code="invalid_path")
        out.append({"src": src, "dst": dst, "host": str(host)})
    return out


def validate_version(session: Session, settings: Settings, principal: Principal, owner_id: str, spec: VersionSpec,
                     *, service_name: str) -> dict[str, Any]:
    """The column values of a version, or a 4xx: everything a replica will need is resolved now,
    and a dry plan is made, so a version that could never start is refused before anything runs."""
    if spec.req_method.strip().lower() != "rest":
        raise BadRequest(f"{spec.req_method} is not served; use rest", code="unsupported_field")
    if spec.runtime not in planning.RUNTIMES:
        raise BadRequest(f"unknown runtime {spec.runtime!r}; one of {', '.join(planning.RUNTIMES)}",
                         code="unknown_runtime")
    mv = _resolve_model(session, principal, spec.model) if spec.model else None
    adapters: dict[str, str] = {}
    for name, ref in spec.adapters.items():
        amv = _resolve_model(session, principal, ref)
        if (amv.format or "") != "peft":
            raise BadRequest(f"adapter {name}: model version {amv.id} is not a PEFT adapter", code="invalid_adapter")
        adapters[name] = amv.id
    runtime = spec.runtime
    if runtime == "auto" and (spec.image or spec.command.strip()) and not spec.template_id:
        runtime = "image"
    if runtime == "auto" and spec.template_id:
        runtime = "template"
    runtime = planning.choose_runtime(settings, runtime, model_format=mv.format if mv else None)
    if runtime in ("transformers", "vllm") and mv is None:
        raise BadRequest(f"runtime {runtime} needs a model version (aiApplicationVersionId / model)",
                         code="missing_model")
    image = jobs_svc.resolve_image(session, principal, spec.image) if spec.image else None
    if spec.image and runtime != "image":
        raise BadRequest(f"an image runs only with runtime image, not {runtime}", code="unsupported_field")
    planning.parse_ports(spec.image_ports)  # refuses a malformed port list now
    volumes = _volumes(settings, owner_id, spec.volumes)
    min_r = spec.min_replicas or spec.replicas or 1
    max_r = spec.max_replicas or max(min_r, spec.replicas or 1)
    replicas = spec.replicas or min_r
    if not min_r <= replicas <= max_r:
        raise BadRequest(f"replicas {replicas} is outside min..max ({min_r}..{max_r})", code="invalid_replicas")
    group = None
    if spec.resource_group:
        group = jobs_svc.placement(session, SimpleNamespace(node_names=[], resource_group=spec.resource_group))
    role = _role(spec.cpu, spec.memory_mib, spec.gpu, spec.gpu_share, spec.gpu_mem, spec.gpu_cores, spec.mig_res,
                 group)
    reasons, _quota = jobs_svc.never_fits_reasons(session, user_id=owner_id, roles=[role], counts_as_job=False)
    if reasons:
        msg = "a replica of this version can never run: " + "; ".join(reasons)
        if any("quota" in r for r in reasons):
            raise QuotaExceeded(msg, code="quota_exceeded", details={"reasons": reasons})
        raise BadRequest(msg, code="never_fits", details={"reasons": reasons})
    model_info = _model_info(session, mv) if mv else None
    values = dict(runtime=runtime, model_version_id=mv.id if mv else None, adapters=adapters,
                  template_id=spec.template_id, image_version_id=(image or {}).get("version_id"),
                  command=spec.command, image_ports=spec.image_ports, envs=dict(spec.env), volumes=volumes,
                  cpu=spec.cpu, memory_mib=spec.memory_mib, gpu=spec.gpu, gpu_share=spec.gpu_share or "none",
                  gpu_mem=spec.gpu_mem, gpu_cores=spec.gpu_cores, mig_res=spec.mig_res or "",
                  resource_group_id=spec.resource_group, resource_group_name=spec.resource_group,
                  replicas=replicas, min_replicas=min_r, max_replicas=max_r, metric=spec.metric,
                  monitor_threshold=spec.monitor_threshold, rate=spec.rate, req_method="rest")
    # the dry plan: the runtime is there (vllm prepared, template known, relay installed)
    launch_plan(session, settings, SimpleNamespace(name=service_name, **values), model_info=model_info,
                socket_path="/nonexistent/validate.sock", image=image)
    return values


def _role(cpu, memory_mib, gpu, gpu_share, gpu_mem, gpu_cores, mig_res, group) -> dict[str, Any]:
    mig = (mig_res or "").strip()
    role: dict[str, Any] = {"role": "master", "replicas": 1, "cpu": float(cpu), "memory_mib": int(memory_mib),
                            "gpu": {"num": int(gpu or 0), "mem_gib": gpu_mem, "share": gpu_share or "none",
                                    "mig": None if mig.lower() in ("", "none") else mig, "cores": gpu_cores}}
    if group:
        role["node_ids"] = group["node_ids"]
    return role


def version_role(session: Session, ver: ServiceVersionModel) -> dict[str, Any]:
    group = None
    if ver.resource_group_name:
        group = jobs_svc.placement(session, SimpleNamespace(node_names=[], resource_group=ver.resource_group_name))
    return _role(ver.cpu, ver.memory_mib, ver.gpu, ver.gpu_share, ver.gpu_mem, ver.gpu_cores, ver.mig_res, group)


def launch_plan(session: Session, settings: Settings, ver: Any, *, model_info: dict | None, socket_path: str,
                image: dict | None = None):
    adapters = {}
    for name, vid in (ver.adapters or {}).items():
        amv = session.get(ModelVersionModel, vid)
        if amv is not None:
            adapters[name] = amv.path
    served = [ver.name] if hasattr(ver, "name") else []
    if model_info and model_info.get("base_path"):  # the version is an adapter: served by name on its base
        adapters = {served[0] if served else "adapter": model_info["path"], **adapters}
        served = []
    plan = planning.plan(settings, session, runtime=ver.runtime, model=model_info, adapters=adapters,
                         served_names=served, template_id=ver.template_id, command=ver.command or "",
                         ports=planning.parse_ports(ver.image_ports), image=image, socket_path=socket_path,
                         resources={"cpu": ver.cpu, "memory_mib": ver.memory_mib, "gpu": ver.gpu})
    # whatever the runtime, the adapters it loads must be visible (read-only) in the replica's sandbox
    bound = {p for p, _ in plan.binds}
    plan.binds += [(p, False) for p in adapters.values() if p not in bound]
    return plan


def _rates(values: list[dict[str, Any]]) -> None:
    given = [v["rate"] for v in values if v["rate"] is not None]
    if not given:
        n = len(values)
        for i, v in enumerate(values):
            v["rate"] = 100 // n + (1 if i < 100 % n else 0)
        return
    if len(given) != len(values) or sum(given) != 100:
        raise BadRequest(f"the versions' rates must sum to 100 (got {given})", code="invalid_rates")


# --- creating --------------------------------------------------------------------------------------

def create_service(session: Session, ctx: Any, *, principal: Principal, req: ServiceCreate, origin: str = "api",
                   owner_id: str | None = None, seed_versions: list[dict] | None = None) -> ServiceModel:
    settings: Settings = ctx.settings
    owner = owner_id or principal.id
    exists = session.scalar(select(ServiceModel.id).where(ServiceModel.owner_id == owner,
                                                          ServiceModel.name == req.name))
    if exists:
        raise Conflict(f"you already have a service named {req.name}", code="name_taken")
    values = [validate_version(session, settings, principal, owner, v, service_name=req.name) for v in req.versions]
    _rates(values)
    svc = ServiceModel(owner_id=owner, name=req.name, description=req.description, path=req.path, origin=origin,
                       state="saved")
    session.add(svc)
    session.flush()
    for i, vals in enumerate(values, start=1):
        raw = (seed_versions or [])[i - 1] if seed_versions and i <= len(seed_versions) else {}
        session.add(ServiceVersionModel(service_id=svc.id, number=i, seed_fields=raw, **vals))
    session.flush()
    events.record(session, actor_id=principal.id, kind="service.created", object_type="service", object_id=svc.id,
                  message=f"service {svc.name} with {len(values)} version(s)", data={"origin": origin})
    stage(session, svc, "accepted: service saved")
    if req.start:
        start_service(session, ctx, principal=principal, svc=svc)
    return svc


def start_service(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel) -> ServiceModel:
    if svc.state in SERVING_STATES:
        return svc
    if svc.state == "stopping":
        raise Conflict(f"service {svc.name} is stopping; start it once it is stopped", code="service_stopping")
    owner = session.get(UserModel, svc.owner_id)
    jobs_svc.check_can_run(settings_of(ctx), is_admin=owner is not None and owner.role == "admin")
    for ver in versions_of(session, svc.id):
        if ver.state == "failed":
            move_version(session, ver, "active", actor_id=principal.id, reason="service started again")
        ver.consecutive_failures = 0
    move_service(session, svc, "deploying", actor_id=principal.id, reason="started")
    stage(session, svc, "start to deploy service")
    return svc


def settings_of(ctx: Any) -> Settings:
    return ctx.settings


def stop_service(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel,
                 reason: str = "stopped by user") -> ServiceModel:
    """Drain every replica (their jobs cancelled, allocations released as they end); the reconciler
    moves the service to stopped once no replica is left."""
    if svc.state in ("stopped", "stopping"):
        return svc
    if svc.state == "saved":
        return move_service(session, svc, "stopped", actor_id=principal.id, reason="never started")
    move_service(session, svc, "stopping", actor_id=principal.id, reason=reason)
    for rep in replicas_of(session, svc.id, live_only=True):
        if rep.state != "draining":
            move_replica(session, rep, "draining", actor_id=principal.id, reason=reason)
    stage(session, svc, f"stopping: {reason}")
    return svc


def delete_service(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel) -> None:
    """Only a stopped, failed or never-started service is deleted (stop first): a running one
    answers 409, so a delete never leaves a replica or an allocation behind."""
    live = [r for r in replicas_of(session, svc.id, live_only=True)]
    if svc.state not in ("saved", "stopped", "failed") or live:
        raise Conflict(f"service {svc.name} is {svc.state}; stop it first", code="service_running")
    events.record(session, actor_id=principal.id, kind="service.deleted", object_type="service", object_id=svc.id,
                  message=f"service {svc.name} deleted")
    # no ORM relationships: children first (SQLite may run without enforced foreign keys)
    for rep in replicas_of(session, svc.id):
        session.delete(rep)
    session.flush()
    for ver in versions_of(session, svc.id):
        session.delete(ver)
    session.flush()
    session.delete(svc)
    session.flush()


def scale_service(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel, version: int | None,
                  replicas: int | None, min_replicas: int | None, max_replicas: int | None) -> ServiceModel:
    vers = versions_of(session, svc.id)
    if version is not None:
        vers = [v for v in vers if v.number == version]
        if not vers:
            raise NotFound(f"service {svc.name} has no version {version}", code="no_version")
    if replicas is None and min_replicas is None and max_replicas is None:
        raise BadRequest("give replicas, or min_replicas / max_replicas", code="invalid_replicas")
    for v in vers:
        lo = min_replicas if min_replicas is not None else v.min_replicas
        hi = max_replicas if max_replicas is not None else v.max_replicas
        want = replicas if replicas is not None else min(max(v.replicas, lo), hi)
        if replicas is not None and (min_replicas is None and max_replicas is None):
            lo, hi = min(lo, want), max(hi, want)
        if lo > hi:
            raise BadRequest(f"min_replicas {lo} > max_replicas {hi}", code="invalid_replicas")
        if not lo <= want <= hi:
            raise BadRequest(f"replicas {want} is outside min..max ({lo}..{hi})", code="invalid_replicas")
        v.min_replicas, v.max_replicas, v.replicas = lo, hi, want
    events.record(session, actor_id=principal.id, kind="service.scaled", object_type="service", object_id=svc.id,
                  message=", ".join(f"v{v.number}: {v.replicas} ({v.min_replicas}..{v.max_replicas})" for v in vers))
    _nudge(session, svc)
    return svc


def _nudge(session: Session, svc: ServiceModel) -> None:
    from modelyard.server.services.common.wake import wake_after_commit

    wake_after_commit(session)


def add_version(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel,
                spec: VersionSpec) -> ServiceVersionModel:
    vals = validate_version(session, ctx.settings, principal, svc.owner_id, spec, service_name=svc.name)
    vers = versions_of(session, svc.id)
    if vals["rate"] is None:
        vals["rate"] = 0  # a new version takes no traffic until the rates say so
    if sum(v.rate for v in vers) + vals["rate"] != 100:
        raise BadRequest(f"with rate {vals['rate']} the versions' rates would sum to "
                         f"{sum(v.rate for v in vers) + vals['rate']}, not 100; set rates after adding",
                         code="invalid_rates")
    number = max((v.number for v in vers), default=0) + 1
    ver = ServiceVersionModel(service_id=svc.id, number=number, **vals)
    session.add(ver)
    session.flush()
    events.record(session, actor_id=principal.id, kind="service.version_added", object_type="service",
                  object_id=svc.id, message=f"version {number} added ({vals['runtime']})")
    _nudge(session, svc)
    return ver


def remove_version(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel, number: int) -> None:
    vers = versions_of(session, svc.id)
    ver = next((v for v in vers if v.number == number), None)
    if ver is None:
        raise NotFound(f"service {svc.name} has no version {number}", code="no_version")
    if len(vers) == 1:
        raise Conflict("a service keeps at least one version; delete the service instead", code="last_version")
    if ver.rate:
        raise Conflict(f"version {number} still takes {ver.rate}% of the traffic; set rates first",
                       code="version_in_use")
    live = [r for r in replicas_of(session, svc.id, live_only=True) if r.version_id == ver.id]
    for rep in live:
        if rep.state != "draining":
            move_replica(session, rep, "draining", actor_id=principal.id, reason=f"version {number} removed")
    if live:
        raise Conflict(f"version {number} has {len(live)} replica(s) draining; remove it again once they ended",
                       code="version_draining")
    session.delete(ver)
    events.record(session, actor_id=principal.id, kind="service.version_removed", object_type="service",
                  object_id=svc.id, message=f"version {number} removed")


def set_rates(session: Session, ctx: Any, *, principal: Principal, svc: ServiceModel, rates: dict[int, int]) -> None:
    vers = {v.number: v for v in versions_of(session, svc.id)}
    unknown = sorted(set(rates) - set(vers))
    if unknown:
        raise NotFound(f"service {svc.name} has no version {unknown[0]}", code="no_version")
    if any(r < 0 or r > 100 for r in rates.values()):
        raise BadRequest("a rate is a percent (0..100)", code="invalid_rates")
    full = {n: rates.get(n, 0) for n in vers}
    if sum(full.values()) != 100:
        raise BadRequest(f"rates must sum to 100 over the versions (got {sum(full.values())})", code="invalid_rates")
    for n, r in full.items():
        vers[n].rate = r
    events.record(session, actor_id=principal.id, kind="service.rates", object_type="service", object_id=svc.id,
                  message=", ".join(f"v{n}: {r}%" for n, r in sorted(full.items())))
    _nudge(session, svc)


# --- reading ---------------------------------------------------------------------------------------

def list_services(session: Session, principal: Principal, *, page: int = 1, page_size: int = 20,
                  name: str | None = None, owner_id: str | None = None, state: str | None = None
                  ) -> tuple[list[ServiceModel], int]:
    stmt = access.visible(select(ServiceModel), ServiceModel, principal)
    if name:
        stmt = stmt.where(ServiceModel.name.ilike(f"%{name}%"))
    if owner_id:
        stmt = stmt.where(ServiceModel.owner_id == owner_id)
    if state:
        stmt = stmt.where(ServiceModel.state == state)
    return paginate(session, stmt.order_by(ServiceModel.created_at.desc(), ServiceModel.id.desc()),
                           page=page, page_size=page_size)


def replica_counts(session: Session, service_ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if not service_ids:
        return out
    for sid, state, n in session.execute(
            select(ServiceReplicaModel.service_id, ServiceReplicaModel.state, func.count())
            .where(ServiceReplicaModel.service_id.in_(service_ids),
                   ServiceReplicaModel.state.in_(LIVE_REPLICA))
            .group_by(ServiceReplicaModel.service_id, ServiceReplicaModel.state)):
        out.setdefault(sid, {})[state] = int(n)
    return out


def summary(session: Session, svc: ServiceModel, counts: dict[str, int] | None = None) -> dict[str, Any]:
    vers = versions_of(session, svc.id)
    counts = counts if counts is not None else replica_counts(session, [svc.id]).get(svc.id, {})
    return {"id": svc.id, "name": svc.name, "owner_id": svc.owner_id, "state": svc.state,
            "description": svc.description, "created_at": svc.created_at, "version_count": len(vers),
            "ready_replicas": counts.get("ready", 0), "desired_replicas": sum(v.replicas for v in vers
                                                                              if v.state == "active")}


def public_url(ctx: Any) -> str:
    s = ctx.settings
    return (s.public_url or f"http://{s.host}:{s.port}").rstrip("/")


def service_detail(session: Session, ctx: Any, svc: ServiceModel) -> dict[str, Any]:
    vers = versions_of(session, svc.id)
    reps = replicas_of(session, svc.id)
    active = [v for v in vers if v.state == "active"]
    desired = sum(v.replicas for v in active)
    ready = sum(1 for r in reps if r.state == "ready")
    out = summary(session, svc)
    names = [svc.name, *(f"{svc.name}:{v.number}" for v in vers)]
    for v in vers:
        names += list((v.adapters or {}).keys())
    out.update({
        "path": svc.path, "origin": svc.origin, "error": svc.error, "updated_at": svc.updated_at,
        "progress": 100 if svc.state == "running" else int(100 * ready / desired) if desired else 0,
        "access_address": f"{public_url(ctx)}/v1", "model_names": names,
        "invocations": svc.invocations, "failures": svc.failures,
        "autoscaling": "stored only: min/max replicas, metric and threshold are kept; the autoscaler comes "
                       "with the gateway",
        "versions": [version_view(v, reps) for v in vers],
        "replicas": [replica_view(r, vers) for r in reps if r.state in LIVE_REPLICA or r is reps[-1]],
    })
    pending = [r["job_id"] for r in out["replicas"] if r["state"] == "pending" and r["job_id"]]
    if pending:  # why a replica waits: its job's queue reason (quota, node capacity)
        why = dict(session.execute(select(JobModel.id, JobModel.waiting_reason).where(JobModel.id.in_(pending))).all())
        for r in out["replicas"]:
            if r["state"] == "pending" and why.get(r["job_id"]):
                r["waiting_reason"] = why[r["job_id"]]
    return out


def version_view(v: ServiceVersionModel, reps: list[ServiceReplicaModel]) -> dict[str, Any]:
    mine = [r for r in reps if r.version_id == v.id]
    return {"id": v.id, "number": v.number, "state": v.state, "error": v.error, "runtime": v.runtime,
            "model_version_id": v.model_version_id, "adapters": v.adapters, "template_id": v.template_id,
            "image_version_id": v.image_version_id, "command": v.command, "image_ports": v.image_ports,
            "env": v.envs, "volumes": [{"src": x["src"], "dst": x["dst"]} for x in v.volumes or []],
            "resources": {"cpu": v.cpu, "memory_mib": v.memory_mib, "gpu": v.gpu, "gpu_share": v.gpu_share,
                          "gpu_mem": v.gpu_mem, "gpu_cores": v.gpu_cores, "mig_res": v.mig_res,
                          "resource_group": v.resource_group_name},
            "weight": v.rate, "rate": v.rate, "req_method": v.req_method,
            "scaling": {"replicas": v.replicas, "min_replicas": v.min_replicas, "max_replicas": v.max_replicas,
                        "metric": {1: "rps", 2: "concurrency", 3: "gpu"}.get(v.metric, str(v.metric)),
                        "monitor_threshold": v.monitor_threshold},
            "instances": {"desired": v.replicas, "ready": sum(1 for r in mine if r.state == "ready"),
                          "live": sum(1 for r in mine if r.state in LIVE_REPLICA)},
            "consecutive_failures": v.consecutive_failures, "seed_fields": v.seed_fields}


def replica_view(r: ServiceReplicaModel, vers: list[ServiceVersionModel]) -> dict[str, Any]:
    number = next((v.number for v in vers if v.id == r.version_id), None)
    return {"id": r.id, "version": number, "index": r.index, "state": r.state, "job_id": r.job_id,
            "socket_path": r.socket_path, "created_at": r.created_at, "started_at": r.started_at,
            "ready_at": r.ready_at, "finished_at": r.finished_at, "message": r.message, "exit_code": r.exit_code,
            "restarts": r.restarts, "replaces_id": r.replaces_id}


def service_events(session: Session, svc: ServiceModel, *, limit: int = 1000) -> list[dict[str, Any]]:
    out = []
    for e in events.list_for(session, object_type="service", object_id=svc.id, limit=limit):
        data = e.data or {}
        abnormal = data.get("event_type") == "abnormal" or data.get("to") == "failed"
        out.append({"at": e.at, "kind": e.kind, "message": e.message, "event_type": "abnormal" if abnormal else "normal",
                    "data": data})
    return out


def find_replica(session: Session, svc: ServiceModel, ref: str | None) -> ServiceReplicaModel:
    reps = replicas_of(session, svc.id)
    if not reps:
        raise NotFound(f"service {svc.name} has no replica yet", code="no_replica")
    if not ref:
        live = [r for r in reps if r.state in LIVE_REPLICA]
        return (live or reps)[-1]
    for r in reps:
        if r.id == ref or r.id.startswith(ref) or (ref.isdigit() and r.index == int(ref) and r.state in LIVE_REPLICA):
            return r
    raise NotFound(f"service {svc.name} has no replica {ref}", code="no_replica")


def replica_log_path(session: Session, settings: Settings, rep: ServiceReplicaModel) -> Path | None:
    if not rep.job_id:
        return None
    return jobs_svc.replica_dir(settings, rep.job_id, "master", 0) / "output.log"


def log_tail(settings: Settings, job_id: str | None, max_bytes: int = 2000) -> str:
    if not job_id:
        return ""
    path = jobs_svc.replica_dir(settings, job_id, "master", 0) / "output.log"
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def json_list(text: Any, what: str) -> Any:
    """The seed's JSON-in-a-string fields (envs, volumes)."""
    if text in (None, "", "null"):
        return None
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}", code="invalid_request") from None


def serve_jobs_of(session: Session, svc: ServiceModel) -> list[JobModel]:
    ids = [r.job_id for r in replicas_of(session, svc.id) if r.job_id]
    if not ids:
        return []
    return list(session.scalars(select(JobModel).where(or_(JobModel.id.in_(ids)))))


def locate_log(ctx: Any, session: Session, replica_id: str):
    """(handle, executor, finished?) of a replica's log: its serve job's (jobs' log machinery)."""
    rep = session.get(ServiceReplicaModel, replica_id)
    if rep is None:
        return None, None, True
    if not rep.job_id:
        return None, None, rep.state not in LIVE_REPLICA
    handle, ex, finished = jobs_svc.locate_replica_log(ctx, session, rep.job_id, None)
    return handle, ex, finished or rep.state not in LIVE_REPLICA


def find_version(session: Session, principal: Principal, version_id: str
                 ) -> tuple[ServiceModel, ServiceVersionModel]:
    """A version by id, through its service's visibility (another user's: 404)."""
    ver = session.get(ServiceVersionModel, (version_id or "").strip())
    one = session.get(ServiceModel, ver.service_id) if ver is not None else None
    if one is None or not (principal.is_admin or one.owner_id == principal.id):
        raise NotFound(f"service version {version_id} not found")
    return one, ver
