"""The serving reconciler: makes every serving service's replicas match its versions.

One pass (idempotent; a bad service is logged and retried next pass, never fatal):
1. probe, outside any transaction: replicas `starting` whose job runs get GET ready_path over their
   Unix socket; `ready` ones get GET live_path every probe_interval_s.
2. per service, in one transaction:
   - stopping: drain what is live; `draining` replicas whose job ended are `exited`; none left ->
     stopped.
   - each replica follows its job: queued -> pending; admitted -> starting ("resources allocated");
     process started -> ("environment prepared"); ready probe 200 -> ready ("weights loaded");
     not ready within the plan's boot_timeout_s -> failed with the log tail; job ended -> failed
     ("replica X died: ...; replacing"), or exited when it was draining; live probe failing
     live_failures_max times in a row -> failed and replaced.
   - each active version: replicas failing before ever being ready version_failures_max times in a
     row -> the version fails with the last log tail (no endless retry); else live replicas are
     brought to the desired count (new rows + serve jobs; the newest extra ones drained).
   - the service: running when every active version has its desired ready replicas, degraded when
     some, failed when every version failed, else deploying.
After a server restart nothing special is needed: the jobs' recovery re-attaches the processes and
a replica keeps its job, so the next pass finds it ready again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from sqlalchemy import func, select

from modelyard.core.ids import new_id
from modelyard.server.db import session_scope
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel
from modelyard.server.orm.models import ModelVersionModel
from modelyard.server.orm.serving import ServiceModel, ServiceReplicaModel, ServiceVersionModel
from modelyard.server.orm.users import UserModel
from modelyard.server.services import jobs as jobs_svc
from modelyard.server.services.common.loops import WakeableLoop
from modelyard.server.services.serving import planning
from modelyard.server.services.serving import service as svc_mod
from modelyard.server.services.serving.states import move_replica, move_service, move_version

log = logging.getLogger(__name__)

ACTIVE_SERVICE_STATES = ("deploying", "running", "degraded", "stopping")
JOB_ENDED = ("succeeded", "failed", "cancelled")


def probe(socket_path: str, path: str, timeout: float) -> bool:
    """GET path on the replica's Unix socket; True on a 2xx."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), timeout=timeout) as c:
            return c.get(f"http://replica{path}").is_success
    except (httpx.HTTPError, OSError):
        return False


class ServingLoop(WakeableLoop):
    thread_name = "modelyard-serving"

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.interval_s = min(self.interval_s, max(0.2, ctx.settings.serving.probe_interval_s))
        self._last_live: dict[str, float] = {}

    def step(self) -> None:
        reconcile_all(self.ctx, self._last_live)


def component(ctx: Any) -> ServingLoop:
    return ServingLoop(ctx)


def reconcile_all(ctx: Any, last_live: dict[str, float] | None = None) -> None:
    last_live = {} if last_live is None else last_live
    with session_scope(ctx.sessions, readonly=True) as s:
        ids = list(s.scalars(select(ServiceModel.id).where(ServiceModel.state.in_(ACTIVE_SERVICE_STATES))))
        # a failed (or stopped) service whose replicas are still draining: finish them
        ids += [i for i in s.scalars(select(ServiceReplicaModel.service_id).where(
            ServiceReplicaModel.state.in_(svc_mod.LIVE_REPLICA)).distinct()) if i not in ids]
    for sid in ids:
        try:
            results = _probe_service(ctx, sid, last_live)
            if _needs_write(ctx, sid, results):
                reconcile_service(ctx, sid, results)
        except Exception:
            log.exception("reconciling service %s failed", sid)


def _probe_service(ctx: Any, sid: str, last_live: dict[str, float]) -> dict[str, tuple[str, bool]]:
    """{replica id: ("ready" | "live", ok)} for the replicas due a probe."""
    cfg = ctx.settings.serving
    due: list[tuple[str, str, str]] = []
    with session_scope(ctx.sessions, readonly=True) as s:
        rows = s.execute(select(ServiceReplicaModel, JobModel.state).join(
            JobModel, JobModel.id == ServiceReplicaModel.job_id).where(
            ServiceReplicaModel.service_id == sid, ServiceReplicaModel.state.in_(("starting", "ready")),
            JobModel.state == "running")).all()
        now = time.monotonic()
        for rep, _job_state in rows:
            plan = rep.plan or {}
            if rep.state == "starting":
                due.append((rep.id, "ready", plan.get("ready_path", "/readyz")))
            elif now - last_live.get(rep.id, 0.0) >= cfg.probe_interval_s:
                due.append((rep.id, "live", plan.get("live_path", "/livez")))
        sockets = {rep.id: rep.socket_path for rep, _ in rows}
    out = {}
    for rid, kind, path in due:
        out[rid] = (kind, probe(sockets[rid], path, cfg.probe_timeout_s))
        if kind == "live":
            last_live[rid] = time.monotonic()
    return out


def _needs_write(ctx: Any, sid: str, probes: dict[str, tuple[str, bool]]) -> bool:
    """Read-only look: a running service whose versions have exactly their desired replicas, all
    ready, their jobs running and their probes passing, needs no write (most passes then take no
    write lock at all)."""
    with session_scope(ctx.sessions, readonly=True) as s:
        svc = s.get(ServiceModel, sid)
        if svc is None or svc.state != "running":
            return svc is not None  # deploying / degraded / stopping, or leftovers of a settled one
        vers = svc_mod.versions_of(s, sid)
        live = svc_mod.replicas_of(s, sid, live_only=True)
        if any(v.state != "active" for v in vers) or any(r.state != "ready" or r.live_failures for r in live):
            return True
        running = set(s.scalars(select(JobModel.id).where(JobModel.id.in_([r.job_id for r in live]),
                                                          JobModel.state == "running"))) if live else set()
    if any(r.job_id not in running for r in live):
        return True
    if any(sum(1 for r in live if r.version_id == v.id) != v.replicas for v in vers):
        return True
    return any(not ok for _kind, ok in probes.values())


def _fail_replica(s, ctx, svc, ver, rep, reason: str, *, replacing: bool, before_ready: bool) -> None:
    tail = svc_mod.log_tail(ctx.settings, rep.job_id)
    move_replica(s, rep, "failed", reason=reason[:500], values={"message": (reason + ("\n" + tail if tail else ""))[:4000]})
    if before_ready:
        ver.consecutive_failures = (ver.consecutive_failures or 0) + 1
    msg = f"replica {rep.index} of version {ver.number} {reason}" + ("; replacing" if replacing else "")
    svc_mod.stage(s, svc, msg, abnormal=True, data={"replica_id": rep.id, "log_tail": tail[-1000:]})


def reconcile_service(ctx: Any, sid: str, probes: dict[str, tuple[str, bool]] | None = None) -> None:
    probes = probes or {}
    settings = ctx.settings
    with session_scope(ctx.sessions) as s:
        svc = s.get(ServiceModel, sid, with_for_update=True, populate_existing=True)
        if svc is None:
            return
        settled = svc.state not in ACTIVE_SERVICE_STATES  # failed / stopped: only its leftovers drain
        vers = {v.id: v for v in svc_mod.versions_of(s, sid)}
        live = svc_mod.replicas_of(s, sid, live_only=True)
        jobs = {j.id: j for j in s.scalars(select(JobModel).where(
            JobModel.id.in_([r.job_id for r in live if r.job_id])))} if live else {}
        now = utcnow()

        for rep in live:
            ver = vers.get(rep.version_id)
            job = jobs.get(rep.job_id) if rep.job_id else None
            jstate = job.state if job is not None else "cancelled"
            if settled or svc.state == "stopping" or ver is None or ver.state != "active":
                if rep.state != "draining":
                    move_replica(s, rep, "draining", reason="service stopping" if svc.state == "stopping"
                                 else "version not active")
                if jstate in JOB_ENDED:
                    move_replica(s, rep, "exited", reason="drained", values={"exit_code": _exit_code(s, job)})
                continue
            if rep.state == "draining":
                if jstate in JOB_ENDED:
                    move_replica(s, rep, "exited", reason="drained", values={"exit_code": _exit_code(s, job)})
                continue
            if jstate in JOB_ENDED:
                why = (job.error if job is not None and job.error else f"its job was {jstate}")
                died = "died" if rep.state == "ready" else "failed before it was ready"
                rep.exit_code = _exit_code(s, job)
                _fail_replica(s, ctx, svc, ver, rep, f"{died}: {why}", replacing=True,
                              before_ready=rep.state != "ready")
                continue
            if rep.state == "pending" and jstate in ("starting", "running"):
                move_replica(s, rep, "starting", reason="resources allocated")
                svc_mod.stage(s, svc, f"[v{ver.number}] replica {rep.index}: resources allocated")
            if rep.state == "starting" and jstate == "running":
                if not (rep.plan or {}).get("launched"):  # once: its sandbox is up, the process started
                    rep.plan = {**(rep.plan or {}), "launched": True}
                    svc_mod.stage(s, svc, f"[v{ver.number}] replica {rep.index}: environment prepared, "
                                          "loading weights")
                kind, ok = probes.get(rep.id, ("ready", False))
                if kind == "ready" and ok:
                    move_replica(s, rep, "ready", reason="ready probe answered")
                    svc_mod.stage(s, svc, f"[v{ver.number}] replica {rep.index}: weights loaded, ready")
                    continue
                boot = float((rep.plan or {}).get("boot_timeout_s") or settings.serving.boot_timeout_s)
                since = job.running_at or rep.started_at or now
                if (now - since).total_seconds() > boot:
                    _fail_replica(s, ctx, svc, ver, rep, f"not ready within {boot:g}s", replacing=True,
                                  before_ready=True)
                    continue
            if rep.state == "ready":
                kind, ok = probes.get(rep.id, ("none", True))
                if kind == "live":
                    rep.live_failures = 0 if ok else (rep.live_failures or 0) + 1
                    if rep.live_failures >= settings.serving.live_failures_max:
                        _fail_replica(s, ctx, svc, ver, rep, f"failed {rep.live_failures} liveness probes",
                                      replacing=True, before_ready=False)
                        continue
                if ver.consecutive_failures:
                    ver.consecutive_failures = 0

        if settled:
            return
        if svc.state == "stopping":
            if not any(r.state in svc_mod.LIVE_REPLICA for r in live):
                move_service(s, svc, "stopped", reason="every replica ended")
                svc_mod.stage(s, svc, "service stopped; every allocation released")
            return

        for ver in vers.values():
            if ver.state != "active":
                continue
            mine = [r for r in live if r.version_id == ver.id and r.state in ("pending", "starting", "ready")]
            if (ver.consecutive_failures or 0) >= settings.serving.version_failures_max:
                last = s.scalars(select(ServiceReplicaModel).where(
                    ServiceReplicaModel.version_id == ver.id, ServiceReplicaModel.state == "failed")
                    .order_by(ServiceReplicaModel.finished_at.desc())).first()
                reason = (f"{ver.consecutive_failures} replicas in a row failed before becoming ready; last: "
                          f"{(last.message if last else '')}")
                move_version(s, ver, "failed", reason=reason[:4000])
                svc_mod.stage(s, svc, f"[v{ver.number}] version failed: {reason[:900]}", abnormal=True)
                for r in mine:
                    move_replica(s, r, "draining", reason="version failed")
                continue
            if len(mine) < ver.replicas:
                for _ in range(ver.replicas - len(mine)):
                    _new_replica(s, ctx, svc, ver)
            elif len(mine) > ver.replicas:
                extra = sorted(mine, key=lambda r: (r.state == "ready", r.created_at), reverse=False)
                for r in sorted(extra, key=lambda r: r.created_at, reverse=True)[: len(mine) - ver.replicas]:
                    move_replica(s, r, "draining", reason="scaled down")
        _settle(s, svc, vers, live)


def _exit_code(s, job: JobModel | None) -> int | None:
    if job is None:
        return None
    reps = jobs_svc.replicas_of(s, job.id)
    return reps[0].exit_code if reps else None


def _settle(s, svc: ServiceModel, vers: dict[str, ServiceVersionModel], live: list[ServiceReplicaModel]) -> None:
    active = [v for v in vers.values() if v.state == "active"]
    if not active:
        if svc.state != "failed":
            errors = "; ".join(f"v{v.number}: {(v.error or '')[:400]}" for v in vers.values())
            move_service(s, svc, "failed", reason=f"every version failed — {errors}"[:4000])
        return
    ready = {v.id: sum(1 for r in live if r.version_id == v.id and r.state == "ready") for v in active}
    full = all(ready[v.id] >= v.replicas for v in active) and len(active) == len(vers)
    some = any(ready.values())
    to = "running" if full else "degraded" if some or svc.state in ("running", "degraded") else "deploying"
    if to != svc.state:
        if to == "deploying":
            return  # running/degraded never go back to deploying on their own
        move_service(s, svc, to, reason="replicas ready" if to == "running" else "some replicas not ready")
        if to == "running":
            svc_mod.stage(s, svc, "running")


def _new_replica(s, ctx: Any, svc: ServiceModel, ver: ServiceVersionModel) -> ServiceReplicaModel:
    """A new replica row and its serve job (queued: the scheduler places it like any job)."""
    settings = ctx.settings
    top = s.scalar(select(func.max(ServiceReplicaModel.index)).where(ServiceReplicaModel.version_id == ver.id))
    index = 0 if top is None else top + 1
    previous = s.scalars(select(ServiceReplicaModel).where(
        ServiceReplicaModel.version_id == ver.id, ServiceReplicaModel.state.in_(("failed",)))
        .order_by(ServiceReplicaModel.created_at.desc())).first()
    rep = ServiceReplicaModel(id=new_id(), service_id=svc.id, version_id=ver.id, index=index, state="pending")
    sock = planning.socket_path(settings, rep.id)
    mv = s.get(ModelVersionModel, ver.model_version_id) if ver.model_version_id else None
    model_info = svc_mod._model_info(s, mv) if mv is not None else None
    image = None
    if ver.image_version_id:  # its Entrypoint/Cmd (run when the version gives no command) and Env
        from modelyard.server.auth import Principal

        owner = s.get(UserModel, svc.owner_id)
        image = jobs_svc.resolve_image(s, Principal(owner.id, owner.name, owner.role), ver.image_version_id)
    plan = svc_mod.launch_plan(s, settings, _named(ver, svc.name), model_info=model_info, socket_path=sock,
                               image=image)
    sdir = planning.make_socket_dir(settings, rep.id)
    rep.socket_path = plan.socket_path
    rep.plan = {"ready_path": plan.ready_path, "live_path": plan.live_path, "boot_timeout_s": plan.boot_timeout_s,
                "served_names": plan.served_names, "kind": plan.kind, "argv": planning.describe_argv(plan.argv)}
    if previous is not None and previous.replaces_id != rep.id:
        rep.replaces_id, rep.restarts = previous.id, (previous.restarts or 0) + 1
    s.add(rep)
    s.flush()
    job = submit_serve_job(s, ctx, svc=svc, ver=ver, rep=rep, plan=plan, model_info=model_info,
                           socket_dir=str(sdir), image=image)
    rep.job_id = job.id
    svc_mod.stage(s, svc, f"[v{ver.number}] replica {rep.index}: queued as job {job.id}",
                  data={"replica_id": rep.id, "job_id": job.id})
    return rep


class _named:
    """A version seen with its service's name (the served model name)."""

    def __init__(self, ver: ServiceVersionModel, name: str):
        self._ver, self.name = ver, name

    def __getattr__(self, item):
        return getattr(self._ver, item)


def submit_serve_job(s, ctx: Any, *, svc: ServiceModel, ver: ServiceVersionModel, rep: ServiceReplicaModel, plan,
                     model_info: dict | None, socket_dir: str, image: dict | None = None) -> JobModel:
    """The job of kind `serve` backing one replica: same queue, ledger, sandbox and recovery as
    every job. Its spec is built here, server-side only (extra_binds: the socket folder writable,
    the plan's binds, the version's volumes)."""
    settings = ctx.settings
    owner = s.get(UserModel, svc.owner_id)
    jobs_svc.check_can_run(settings, is_admin=owner is not None and owner.role == "admin")
    job_id = new_id()
    jdir = jobs_svc.job_dir(settings, job_id)
    role = svc_mod.version_role(s, ver)
    binds = [[socket_dir, socket_dir, True], *[[p, p, bool(w)] for p, w in plan.binds],
             *[[v["host"], v["dst"], True] for v in ver.volumes or []]]
    env = {**(ver.envs or {}), **plan.env, "MODELYARD_SERVICE": svc.name, "MODELYARD_SERVICE_ID": svc.id,
           "MODELYARD_SERVICE_VERSION": str(ver.number), "MODELYARD_REPLICA_ID": rep.id}
    spec = {"roles": [role], "env": env, "job_dir": str(jdir), "output_dir": str(jdir / "output"),
            "checkpoint_dir": str(jdir / "checkpoints"), "metrics_file": str(jdir / "metrics.jsonl"),
            "image": image, "model": model_info, "data": None, "network": None, "labels": {},
            "placement": {"node_ids": role["node_ids"]} if role.get("node_ids") else None,
            "argv": list(plan.argv), "command_source": f"serving:{ver.runtime}", "extra_binds": binds,
            "service": {"service_id": svc.id, "version_id": ver.id, "replica_id": rep.id,
                        "socket_path": plan.socket_path}}
    job = JobModel(id=job_id, owner_id=svc.owner_id, name=f"{svc.name}-v{ver.number}-r{rep.index}"[:128],
                   description=f"replica {rep.index} of service {svc.name} version {ver.number}",
                   kind=jobs_svc.SERVE_KIND, origin="service", state="pending", spec=spec, roles=[role],
                   image_id=(image or {}).get("id"), image_version_id=(image or {}).get("version_id"),
                   model_version_id=ver.model_version_id)
    s.add(job)
    s.flush()
    jobs_svc.write_job_files(job)
    jobs_svc.transition(s, job, "queued", reason=f"service {svc.name} replica {rep.index}")
    return job
