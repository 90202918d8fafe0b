"""Jobs: submit (validate + admit), list, detail, cancel, resume, register output, metrics.

Submitting never starts anything: it validates the request completely (model, data, image,
hyperparameters, command), refuses a job that could never run on an idle platform (bigger than
the user's quota or than every node) with a 4xx listing what is short, and otherwise queues it.
The scheduler (scheduler/queue.py) starts queued jobs; scheduler/runner.py runs and watches them.

Files of a job live in settings.jobs_dir/<job_id>/:
    spec.json            the training spec (training jobs; core/spec.py TrainingSpec, see ARCHITECTURE.md)
    output/              MODELYARD_OUTPUT_DIR: what the job produces (registered as a model version)
    checkpoints/         MODELYARD_CHECKPOINT_DIR unless checkPointDir names a folder in the user's files
    metrics.jsonl        MODELYARD_METRICS_FILE: ingested into job_metrics by the reconcile loop
    <role>-<index>/      one per replica: its working dir, output.log, launch.json, exit_code

Images (custom jobs): there is no container runtime here; a replica is a host process. A job that
names an image records it (image_id / image_version_id, so the image cannot be deleted while the
job is queued or running) and applies what makes sense on the host: the image config's Env
(except PATH, HOME, HOSTNAME, LD_LIBRARY_PATH, TERM, which describe the image's own filesystem),
its Entrypoint (prepended to an argv command; Entrypoint + Cmd when no command is given), and its
WorkingDir when the same folder exists in the user's files (e.g. /Code -> <user root>/Code).
User, ExposedPorts, volumes and the layers themselves are not applied. The platform's python
(with torch, transformers, peft) comes first on PATH.

Modules: resources.py (roles, replica slots, the never-fits check), resolve.py (model, data, image,
command and hyperparameter resolution).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Select, insert, or_, select
from sqlalchemy.orm import Session

from modelyard.core.enums import JobState
from modelyard.core.errors import BadRequest, Conflict, NotFound
from modelyard.core.ids import new_id
from modelyard.core.spec import SPEC_ENV, SPEC_FILE, TrainingData, TrainingSpec
from modelyard.core.strategies import normalize_strategy, seed_name
from modelyard.server.auth import Principal
from modelyard.server.db import paginate
from modelyard.server.orm import AllocationModel, UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobMetricModel, JobModel, JobReplicaModel
from modelyard.server.orm.models import ModelVersionModel
from modelyard.server.schemas.jobs import JobResponse, JobSubmit, ReplicaResponse
from modelyard.server.services import events, models
from modelyard.server.services.common import access
from modelyard.server.services.common.filters import enum_filter
from modelyard.server.services.common.paths import resolve_in, resolve_user_path, user_root
from modelyard.server.services.common.refs import resolve_owned_ref, resolve_ref
from modelyard.server.services.common.wake import wake_after_commit
from modelyard.server.services.jobs import admission, command
from modelyard.server.services.jobs.resolve import (
    _safe_model_name,
    default_output_model,
    load_user_config,
    qlora_unavailable_reason,
    resolve_data,
    resolve_hyperparameters,
    resolve_image,
    resolve_model,
)
from modelyard.server.services.jobs.resources import (
    gpu_kind,
    normalize_roles,
    refuse_if_never_fits,
    role_resources,
)
from modelyard.server.services.jobs.sandbox import MODELYARD_SRC, check_can_run
from modelyard.server.services.jobs.states import transition
from modelyard.server.settings import Settings

TRAINING_KINDS = ("finetune", "pretrain")
# a service replica's job (services/serving): placed, accounted and sandboxed like any job, but it
# takes no job slot of the owner's quota (a user running 4 training jobs can still deploy: a
# service is long-lived and would otherwise block training for good), and job lists hide it unless
# asked for by kind
SERVE_KIND = "serve"


def counts_as_job(kind: str | None) -> bool:
    return kind != SERVE_KIND
# image env vars that describe the image's own filesystem and would break the host process
# the server's variables a job inherits: locale, time zone and the hub switches that keep
# transformers / datasets offline
INHERITED_ENV = {"PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"}
IMAGE_ENV_SKIPPED = {"PATH", "HOME", "HOSTNAME", "LD_LIBRARY_PATH", "TERM", "PWD", "SHLVL"}
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES")


# --- paths -----------------------------------------------------------------------------------

def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def replica_dir(settings: Settings, job_id: str, role: str, index: int) -> Path:
    return job_dir(settings, job_id) / f"{role}-{index}"


def output_dir(settings: Settings, job: JobModel) -> Path:
    return Path(job.spec.get("output_dir") or job_dir(settings, job.id) / "output")


def metrics_file(settings: Settings, job: JobModel) -> Path:
    return Path(job.spec.get("metrics_file") or job_dir(settings, job.id) / "metrics.jsonl")


# --- submit ------------------------------------------------------------------------------------

def submit_job(session: Session, ctx: Any, *, principal: Principal, req: JobSubmit, origin: str = "api",
               owner_id: str | None = None) -> JobModel:
    """Validate and queue a job (or refuse it: nothing is written then). The caller commits."""
    settings: Settings = ctx.settings
    owner = owner_id or principal.id
    kind = req.kind
    is_training = kind in TRAINING_KINDS
    is_pretrain = kind == "pretrain"
    roles = normalize_roles(req.roles, kind)
    job_id = new_id()
    jdir = job_dir(settings, job_id)
    name = req.name or f"{kind}-{job_id[:8]}"

    model_v, model_info = (None, None)
    if req.model:
        model_v, model_info = resolve_model(session, principal, req.model)
    elif req.model_dir:
        mdir = resolve_user_path(settings, owner, req.model_dir)
        if not (mdir / "config.json").is_file():
            raise BadRequest(f"{req.model_dir} holds no Hugging Face model (config.json missing)",
                             code="invalid_model_dir")
        model_info = {"version_id": None, "model_id": None, "version": None, "format": "hf", "path": str(mdir),
                      "architecture": None, "user_dir": req.model_dir}
    elif is_training:
        raise BadRequest("a training job needs a model (modelVersionId / modelId)", code="missing_model")
    dataset_v, data = resolve_data(session, settings, principal, owner, input_type=req.input_type,
                                   dataset=req.dataset, input_dir=req.input_dir, required=is_training)
    image = resolve_image(session, principal, req.image) if req.image else None
    owner_row = session.get(UserModel, owner)
    check_can_run(settings, is_admin=owner_row is not None and owner_row.role == "admin")
    admission.check_queue_rights(session, settings, principal, owner, req)
    admission.check_search(session, owner, req.search_id)
    admission.check_network(session, settings, owner, req.network)
    where = admission.placement(session, req)
    if where is not None:
        roles = [{**r, "node_ids": where["node_ids"]} for r in roles]

    # outputDir / checkPointDir: folders in the owner's files (what the job writes there stays there)
    checkpoint_dir = _user_folder(settings, owner, req.checkpoint_dir, "checkPointDir") or jdir / "checkpoints"
    out_dir = _user_folder(settings, owner, req.output_dir, "outputDir") or jdir / "output"
    spec: dict[str, Any] = {
        "roles": roles, "env": dict(req.env), "job_dir": str(jdir), "output_dir": str(out_dir),
        "checkpoint_dir": str(checkpoint_dir), "metrics_file": str(jdir / "metrics.jsonl"),
        "user_output_dir": req.output_dir, "resume": bool(req.resume), "image": image, "model": model_info,
        "data": data, "search_id": req.search_id, "network": req.network, "placement": where,
        "labels": dict(req.labels),
        "output_model_name": None,  # set below once the strategy is known
        "request": req.model_dump(exclude_none=True, exclude_defaults=True),
    }
    strategy = None
    if is_training:
        strategy, typed, cfg_info = resolve_hyperparameters(settings, owner, req, is_pretrain)
        if strategy == "qlora" and (why := qlora_unavailable_reason(session, roles)):
            raise BadRequest(why, code="unsupported_strategy", details={"strategy": strategy})
        spec["config"] = cfg_info
        spec["argv"] = [sys.executable, "-m", "modelyard.runtime.train"]
        spec["command_source"] = "modelyard.runtime.train"
        # the trainer's contract (core/spec.py), written to spec.json by write_job_files
        spec["training"] = TrainingSpec(
            job_id=job_id, kind=kind, strategy=strategy,
            model_dir=model_info["path"], model_format=model_info["format"],
            base_model_dir=model_info.get("base_path"),
            data=TrainingData(shape=data["shape"], train=data["train"], validation=data["validate"]),
            hyperparameters=typed, output_dir=spec["output_dir"], checkpoint_dir=spec["checkpoint_dir"],
            resume=bool(req.resume), metrics_file=spec["metrics_file"],
            packing=bool(typed.get("packing", False)), max_seq_length=int(typed.get("max_seq_length", 1024)),
        ).model_dump()
    else:
        profile = None
        if req.profile_path:
            profile = load_user_config(settings, owner, req.profile_path)
            if profile is None:
                raise BadRequest(f"profile {req.profile_path} not found in your files", code="invalid_config")
        hparams = command.custom_hyperparameters(req, profile)
        dirs = {"output_dir": spec["output_dir"], "checkpoint_dir": spec["checkpoint_dir"],
                "model_dir": (model_info or {}).get("path"), "data_dir": (data or {}).get("dir")}
        argv, source = command.build_argv(req, image, hparams, dirs)
        spec["argv"], spec["command_source"] = argv, source
        spec["hyperparameters"] = hparams
        spec["dirs_env"] = command.placeholder_env(dirs)
    spec["output_model_name"] = _safe_model_name(
        req.output_model_name or default_output_model((model_info or {}).get("model_name")
                                                      or Path((model_info or {}).get("user_dir") or "").name or None,
                                                      strategy, name), job_id)
    if req.working_dir:
        wd = resolve_user_path(settings, owner, req.working_dir)
        if not wd.is_dir():
            raise BadRequest(f"workingDir {req.working_dir} is not a folder in your files", code="invalid_path")
        spec["working_dir"] = str(wd)
    # an image's WorkingDir is a path inside the image: applied by the sandbox (services/jobs/sandbox.py)

    refuse_if_never_fits(session, user_id=owner, roles=roles)

    job = JobModel(id=job_id, owner_id=owner, name=name, description=req.description, kind=kind,
                   is_pretrain=is_pretrain, strategy=strategy, origin=origin, state=JobState.pending.value,
                   priority=req.priority, is_urgent=req.is_urgent, spec=spec, roles=roles, search_id=req.search_id,
                   image_id=(image or {}).get("id"), image_version_id=(image or {}).get("version_id"),
                   model_version_id=model_v.id if model_v is not None else None,
                   dataset_version_id=dataset_v.id if dataset_v is not None else None)
    session.add(job)
    session.flush()
    events.record(session, actor_id=principal.id, kind="job.created", object_type="job", object_id=job.id,
                  message=f"{kind} job {name}", data={"kind": kind, "origin": origin, "owner_id": owner,
                                                       "resources": [{"role": r["role"], "replicas": r["replicas"],
                                                                      **role_resources(r).as_dict()}
                                                                     for r in roles]})
    write_job_files(job)
    transition(session, job, JobState.queued, actor_id=principal.id, reason="admitted")
    return job


def _user_folder(settings: Settings, owner: str, rel: str | None, field: str) -> Path | None:
    if not rel:
        return None
    if "\x00" in rel:
        raise BadRequest(f"{field} holds a NUL byte", code="invalid_path")
    path = resolve_user_path(settings, owner, rel)  # refuses ../ and links out of the owner's root
    if path.exists() and not path.is_dir():
        raise BadRequest(f"{field} {rel} is a file in your files, not a folder", code="invalid_path")
    return path


def write_job_files(job: JobModel) -> None:
    jdir = Path(job.spec["job_dir"])
    (jdir / "output").mkdir(parents=True, exist_ok=True)
    Path(job.spec["output_dir"]).mkdir(parents=True, exist_ok=True)
    Path(job.spec["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
    if job.spec.get("hyperparameters") is not None:
        tmp = jdir / "hyperparameters.json.tmp"
        tmp.write_text(json.dumps(job.spec["hyperparameters"], indent=2, ensure_ascii=False))
        os.replace(tmp, jdir / "hyperparameters.json")
    if job.spec.get("training"):
        # a TrainingSpec's model_dump() (built at submit): the trainer parses it (core/spec.py)
        tmp = jdir / f"{SPEC_FILE}.tmp"
        tmp.write_text(json.dumps(job.spec["training"], indent=2))
        os.replace(tmp, jdir / SPEC_FILE)


# --- the environment of a replica -----------------------------------------------------------------

def replica_env(settings: Settings, job: JobModel, *, role: str, index: int, rank: int, local_rank: int,
                world_size: int, master_addr: str, master_port: int, devices: list[int], role_spec: dict
                ) -> dict[str, str]:
    # nothing of the server's own environment (its secrets) reaches a job: only these
    env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV}
    # `python` in a command is the platform's interpreter (torch, transformers, peft available),
    # importing the same modelyard as the server (the sandbox mounts exactly that copy)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["PYTHONPATH"] = MODELYARD_SRC
    image = job.spec.get("image") or {}
    for k, v in (image.get("env") or {}).items():
        if k not in IMAGE_ENV_SKIPPED:
            env[k] = v
    spec = job.spec
    ours = {
        "MODELYARD_JOB_ID": job.id, "MODELYARD_JOB_NAME": job.name, "MODELYARD_JOB_KIND": job.kind,
        "MODELYARD_ATTEMPT": str(job.attempt), "MODELYARD_JOB_DIR": spec["job_dir"],
        "MODELYARD_OUTPUT_DIR": spec["output_dir"], "MODELYARD_CHECKPOINT_DIR": spec["checkpoint_dir"],
        "MODELYARD_METRICS_FILE": spec["metrics_file"], "MODELYARD_USER_ROOT": str(user_root(settings, job.owner_id)),
        "MODELYARD_ROLE": role, "MODELYARD_REPLICA_INDEX": str(index), "MODELYARD_RESUME": "1" if spec.get("resume") else "0",
        "RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port), "PYTHONUNBUFFERED": "1",
    }
    if spec.get("training"):
        ours[SPEC_ENV] = str(Path(spec["job_dir"]) / SPEC_FILE)
    if spec.get("hyperparameters") is not None:
        ours["MODELYARD_HPARAMS"] = str(Path(spec["job_dir"]) / "hyperparameters.json")
    ours.update(spec.get("dirs_env") or {})
    if spec.get("model"):
        m = spec["model"]
        ours["MODELYARD_MODEL_DIR"] = m["path"]  # for a PEFT adapter: the adapter (spec model_dir)
        if m.get("base_path"):
            ours["MODELYARD_BASE_MODEL_DIR"] = m["base_path"]
    if spec.get("data"):
        ours["MODELYARD_DATA_DIR"] = spec["data"].get("dir", "")
    kindg = gpu_kind(role_spec)
    if devices:
        ours["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    elif kindg == "none":
        ours["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job must not grab a GPU it was not given
    cpu = float(role_spec.get("cpu") or 0)
    user_env = spec.get("env") or {}
    if cpu >= 1 and "OMP_NUM_THREADS" not in user_env:
        ours["OMP_NUM_THREADS"] = str(max(1, math.floor(cpu)))
    env.update(user_env)
    env.update(ours)  # the platform's variables win over the user's
    return env


# --- reading -----------------------------------------------------------------------------------

def get_job(session: Session, principal: Principal, job_id: str) -> JobModel:
    """By id, unique id prefix or name (several jobs of the caller's with that name: the newest)."""
    return resolve_ref(session, JobModel, job_id, principal, what="job", newest=True)


def _get_owned(session: Session, principal: Principal, job_id: str, *, lock: bool = False) -> JobModel:
    job = resolve_owned_ref(session, JobModel, job_id, principal, what="job", newest=True)
    if lock:  # PostgreSQL: serialise with the scheduler / reconciler acting on the same job
        session.refresh(job, with_for_update=True)
    return job


def list_query(principal: Principal, *, states: list[str] | None = None, kinds: list[str] | None = None,
               q: str | None = None, owner_id: str | None = None, origin: str | None = None,
               is_pretrain: bool | None = None, search_id: str | None = None,
               strategies: list[str] | None = None) -> Select:
    stmt = access.visible(select(JobModel), JobModel, principal)
    states = enum_filter(states, [s.value for s in JobState], what="state")
    kinds = enum_filter(kinds, ("custom", *TRAINING_KINDS, SERVE_KIND), what="kind")
    if states:
        stmt = stmt.where(JobModel.state.in_(states))
    if kinds:
        stmt = stmt.where(JobModel.kind.in_(kinds))
    if not kinds or SERVE_KIND not in kinds:
        stmt = stmt.where(JobModel.kind != SERVE_KIND)
    if strategies:
        wanted = {normalize_strategy(s) for s in strategies}
        # rows written before the one vocabulary hold the seed's words
        stored = wanted | {seed_name(s) for s in wanted if s != "qlora"}
        stmt = stmt.where(JobModel.strategy.in_(sorted(stored)))
        if "pretrain" not in wanted:
            stmt = stmt.where(JobModel.is_pretrain.is_(False))
        elif wanted == {"pretrain"}:
            stmt = stmt.where(JobModel.is_pretrain.is_(True))
    if q:
        stmt = stmt.where(or_(JobModel.name.ilike(f"%{q}%"), JobModel.id == q))
    if owner_id:
        stmt = stmt.where(JobModel.owner_id == owner_id)
    if origin:
        stmt = stmt.where(JobModel.origin == origin)
    if is_pretrain is not None:
        stmt = stmt.where(JobModel.is_pretrain.is_(is_pretrain))
    if search_id:
        stmt = stmt.where(JobModel.search_id == search_id)
    return stmt.order_by(JobModel.created_at.desc(), JobModel.id.desc())


def list_jobs(session: Session, principal: Principal, *, page: int = 1, page_size: int = 20, **filters
              ) -> tuple[list[JobModel], int]:
    return paginate(session, list_query(principal, **filters), page=page, page_size=page_size)


def replicas_of(session: Session, job_id: str) -> list[JobReplicaModel]:
    return list(session.scalars(select(JobReplicaModel).where(JobReplicaModel.job_id == job_id)
                                .order_by(JobReplicaModel.rank, JobReplicaModel.role, JobReplicaModel.index)))


def find_replica(session: Session, job: JobModel, name: str | None) -> JobReplicaModel:
    reps = replicas_of(session, job.id)
    if not reps:
        raise NotFound(f"job {job.id} has not started any replica yet", code="no_replica")
    if not name:
        return reps[0]
    for r in reps:
        if r.name == name or str(r.rank) == name:
            return r
    raise NotFound(f"job {job.id} has no replica {name} (replicas: {', '.join(r.name for r in reps)})",
                   code="no_replica")


def job_detail(session: Session, job: JobModel) -> dict[str, Any]:
    allocs = session.scalars(select(AllocationModel).where(
        AllocationModel.consumer_type == "job", AllocationModel.consumer_id == job.id)
        .order_by(AllocationModel.created_at)).all()
    evs = events.list_for(session, object_type="job", object_id=job.id)
    out = JobResponse.model_validate(job).model_dump()
    out["spec"] = job.spec
    out["replicas"] = [ReplicaResponse.model_validate(r).model_dump() for r in replicas_of(session, job.id)]
    out["allocations"] = [{"id": a.id, "part": a.part, "node_id": a.node_id, "cpu": a.cpu,
                           "memory_mib": a.memory_mib, "gpu": a.gpu, "vgpu": a.vgpu, "mig": a.mig,
                           "created_at": a.created_at, "released_at": a.released_at} for a in allocs]
    out["events"] = [{"at": e.at, "kind": e.kind, "actor_id": e.actor_id, "message": e.message, "data": e.data}
                     for e in evs]
    out["waiting_reason"] = job.waiting_reason if job.state == "queued" else None
    return out


def metric_series(session: Session, job: JobModel, *, names: list[str] | None = None,
                  since_step: int | None = None, attempt: int | None = None) -> dict[str, dict[str, list]]:
    stmt = select(JobMetricModel.name, JobMetricModel.step, JobMetricModel.value, JobMetricModel.ts,
                  JobMetricModel.attempt).where(JobMetricModel.job_id == job.id)
    if names:
        stmt = stmt.where(JobMetricModel.name.in_(names))
    if since_step is not None:
        stmt = stmt.where(JobMetricModel.step > since_step)
    if attempt is not None:
        stmt = stmt.where(JobMetricModel.attempt == attempt)
    out: dict[str, dict[str, list]] = {}
    for name, step, value, ts, att in session.execute(stmt.order_by(JobMetricModel.id)):
        s = out.setdefault(name, {"step": [], "value": [], "ts": [], "attempt": []})
        s["step"].append(step)
        s["value"].append(value)
        s["ts"].append(ts)
        s["attempt"].append(att)
    return out


# --- changing ----------------------------------------------------------------------------------

def cancel_job(session: Session, ctx: Any, *, principal: Principal, job_id: str,
               reason: str = "cancelled by user") -> JobModel:
    """Queued jobs are cancelled at once. Starting/running ones get cancel_requested_at: the
    reconcile loop sends SIGTERM to their process groups, SIGKILL after
    settings.scheduler.cancel_grace_s, and moves the job to cancelled (releasing its resources in
    that same transaction) once no replica is left."""
    job = _get_owned(session, principal, job_id, lock=True)
    state = JobState(job.state)
    if state.finished:
        raise Conflict(f"job {job.id} already {state.value}", code="job_finished")
    if state in (JobState.pending, JobState.queued):
        transition(session, job, JobState.cancelled, actor_id=principal.id, reason=reason)
        return job
    if job.cancel_requested_at is None:
        job.cancel_requested_at = utcnow()
        events.record(session, actor_id=principal.id, kind="job.cancel_requested", object_type="job",
                      object_id=job.id, message=reason, data={"state": job.state})
        wake_after_commit(session)
    return job


def resume_job(session: Session, ctx: Any, *, principal: Principal, job_id: str) -> JobModel:
    """A failed or cancelled job is queued again as a new attempt; training resumes from the newest
    checkpoint in its checkpoint dir (spec resume=true)."""
    job = _get_owned(session, principal, job_id, lock=True)
    if job.kind == SERVE_KIND:  # its service replaces a replica with a new job; a resumed one would be untracked
        raise Conflict(f"job {job.id} backs a service replica; start or scale the service instead",
                       code="not_resumable")
    if job.state not in (JobState.failed.value, JobState.cancelled.value):
        raise Conflict(f"only failed or cancelled jobs can be resumed; job {job.id} is {job.state}",
                       code="not_resumable")
    refuse_if_never_fits(session, user_id=job.owner_id, roles=job.spec["roles"])
    spec = json.loads(json.dumps(job.spec))
    spec["resume"] = True
    if spec.get("training"):
        spec["training"]["resume"] = True
    job.spec = spec
    job.attempt = (job.attempt or 1) + 1
    job.output_model_version_id = None
    job.result = {}
    job.waiting_reason = None
    write_job_files(job)
    transition(session, job, JobState.queued, actor_id=principal.id, reason=f"resumed as attempt {job.attempt}")
    return job


def register_output(session: Session, ctx: Any, *, principal: Principal, job_id: str, model_name: str,
                    description: str = "", path: str | None = None) -> Any:
    """Register a succeeded job's output folder (or a folder in it) as a new model version; a job
    whose output is already registered gets that version back (nothing new is created)."""
    job = _get_owned(session, principal, job_id)
    if job.state != JobState.succeeded.value:
        raise Conflict(f"job {job.id} is {job.state}; only a succeeded job's output can be registered",
                       code="job_not_succeeded")
    if job.output_model_version_id:
        # idempotent: the job's output is already a version (a second call, or a training job's
        # automatic registration); hand that one back instead of a duplicate
        existing = session.get(ModelVersionModel, job.output_model_version_id)
        if existing is not None:
            return existing
    out = output_dir(ctx.settings, job)
    src = out
    if path:
        src = resolve_in(out, path)
    if not src.is_dir() or not any(src.iterdir()):
        raise BadRequest(f"the job's output folder {('output/' + path) if path else 'output/'} is empty",
                         code="empty_output")
    mv = _register(session, ctx.settings, job, model_name=model_name, source_dir=src, description=description,
                   metrics=(job.result or {}).get("metrics"))
    events.record(session, actor_id=principal.id, kind="job.output_registered", object_type="job", object_id=job.id,
                  data={"model_version_id": mv.id, "model_name": model_name})
    return mv


def _register(session: Session, settings: Settings, job: JobModel, *, model_name: str, source_dir: Path,
              description: str = "", metrics: dict | None = None) -> Any:
    base_id = (job.spec.get("model") or {}).get("version_id") or job.model_version_id
    hparams = (job.spec.get("training") or {}).get("hyperparameters")
    mv = models.register_version(
        session, settings, owner_id=job.owner_id, model_name=model_name, source_dir=source_dir, source=1,
        job_id=job.id, base_version_id=base_id, dataset_version_id=job.dataset_version_id,
        hyperparameters=hparams, metrics=metrics,
        description=description or f"output of job {job.name} ({job.id}, attempt {job.attempt})")
    job.output_model_version_id = mv.id
    return mv


def finalize_training(session: Session, settings: Settings, job: JobModel) -> Any:
    """A training job's replicas all exited 0: read its result and register the output."""
    out = output_dir(settings, job)
    result_path = out / "modelyard_result.json"
    try:
        result = json.loads(result_path.read_text())
    except FileNotFoundError:
        raise BadRequest("the trainer exited 0 but wrote no output/modelyard_result.json",
                         code="no_result") from None
    except ValueError as exc:
        raise BadRequest(f"output/modelyard_result.json is not valid JSON: {exc}", code="no_result") from None
    job.result = result
    mv = _register(session, settings, job, model_name=job.spec.get("output_model_name") or job.name,
                   source_dir=out, metrics=result.get("metrics"))
    return mv


# --- metrics ingestion (called by the reconcile loop) ---------------------------------------------

NOT_SERIES = ("step", "ts", "max_steps", "total_steps")  # progress only, not a time series
PROGRESS_KEYS = ("step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_s",
                 "max_steps", "total_steps", "ts")


def ingest_metrics(session: Session, settings: Settings, job: JobModel, *, max_bytes: int = 4 << 20) -> int:
    """Append new complete lines of the job's metrics.jsonl to job_metrics. Returns rows added."""
    path = metrics_file(settings, job)
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    offset = job.metrics_offset or 0
    if size < offset:  # the file was replaced: start over
        offset = 0
    if size == offset:
        return 0
    with path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read(max_bytes)
    end = chunk.rfind(b"\n")
    if end < 0:
        return 0
    chunk = chunk[: end + 1]
    rows: list[dict[str, Any]] = []
    progress = dict(job.progress or {})
    for raw in chunk.splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        try:
            step = int(rec.get("step", progress.get("step", 0)) or 0)
        except (TypeError, ValueError):
            continue
        ts = rec.get("ts")
        ts = float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else utcnow().timestamp()
        for name, value in rec.items():
            if name in NOT_SERIES or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if len(name) > 64 or not math.isfinite(float(value)):
                continue
            rows.append({"job_id": job.id, "attempt": job.attempt, "step": step, "name": name,
                         "value": float(value), "ts": ts})
        for k in PROGRESS_KEYS:
            if k in rec and isinstance(rec[k], int | float) and not isinstance(rec[k], bool):
                progress[k] = rec[k]
        progress["step"] = step
    if rows:
        session.execute(insert(JobMetricModel), rows)
    job.metrics_offset = offset + len(chunk)
    job.progress = progress
    return len(rows)


def owner_names(session: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(session.execute(select(UserModel.id, UserModel.name).where(UserModel.id.in_(ids))).all())
