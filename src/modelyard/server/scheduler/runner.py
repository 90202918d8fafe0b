"""Running jobs: launch admitted jobs through their nodes' executors, watch them, finish them.

- launch_job: starting -> running once every replica's process is up (or -> failed/cancelled).
- reconcile: for each starting/running job, ingest new metrics, poll replicas, and decide:
  cancel requested -> SIGTERM, SIGKILL after the grace period, `cancelled` when none is left;
  a replica failed -> kill the others, `failed` with the reason; all exited 0 -> (training:
  register the output as a model version) `succeeded`. Every terminal transition releases the
  job's allocations in the same transaction (services/jobs/states.py).
- recover (once at start): replicas of running jobs are re-attached when their pid still runs
  with the recorded start time; the others resolve through their exit_code file or are failed
  ("replica process vanished while the server was down"). Jobs caught in `starting` are relaunched
  (anything they had started is killed first).
All of it is idempotent: running it twice, or after a crash at any point, converges.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from modelyard.core.enums import JobState
from modelyard.server.db import session_scope
from modelyard.server.executors.base import (
    Executor,
    ReplicaHandle,
    ReplicaLaunch,
    ReplicaStatus,
)
from modelyard.server.orm import NodeModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.orm.users import UserModel
from modelyard.server.services import events
from modelyard.server.services import jobs as jobs_svc
from modelyard.server.services.jobs import (
    StaleState,
    describe_exit_code,
    executor_for,
    executor_named,
    handle_of,
    move_replica,
    transition,
)

log = logging.getLogger(__name__)

_LAUNCHING: set[str] = set()  # job ids being launched by this process
_TERM_SENT: dict[tuple[str, int], float] = {}  # (job id, attempt) -> when SIGTERM went out
_LOCK = threading.Lock()
ORPHAN_STARTING_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_local(node: NodeModel | None) -> bool:
    return node is None or node.address in ("", "127.0.0.1", "localhost") or node.name == socket.gethostname()


# --- launch ----------------------------------------------------------------------------------

def build_launches(ctx: Any, job: JobModel, reps: list[JobReplicaModel], nodes: dict[str, NodeModel],
                   owner: Any = None) -> list[ReplicaLaunch]:
    """One ReplicaLaunch per replica, each with its sandbox (services/jobs/sandbox.py decides what it
    sees; None only in the admin's explicit unsafe mode or for the admin's own job without bwrap)."""
    settings = ctx.settings
    owner_name = getattr(owner, "name", "") or ""
    owner_is_admin = getattr(owner, "role", "user") == "admin"
    rootfs, run_config = jobs_svc.image_rootfs(ctx, job)
    roles = {r["role"]: r for r in job.spec["roles"]}
    world = len(reps)
    master = next((r for r in reps if r.rank == 0), reps[0])
    mnode = nodes.get(master.node_id)
    master_addr = "127.0.0.1" if _is_local(mnode) else mnode.address
    port = free_port()
    local_counts: dict[str | None, int] = {}
    launches = []
    for rep in sorted(reps, key=lambda r: r.rank):
        local_rank = local_counts.get(rep.node_id, 0)
        local_counts[rep.node_id] = local_rank + 1
        env = jobs_svc.replica_env(settings, job, role=rep.role, index=rep.index, rank=rep.rank,
                                   local_rank=local_rank, world_size=world, master_addr=master_addr,
                                   master_port=port, devices=list(rep.devices or []), role_spec=roles[rep.role])
        rdir = jobs_svc.replica_dir(settings, job.id, rep.role, rep.index)
        cwd = job.spec.get("working_dir") or str(rdir)
        sb = jobs_svc.sandbox_for(settings, job, roles[rep.role], owner_name=owner_name,
                                  owner_is_admin=owner_is_admin, replicas=world, rootfs=rootfs,
                                  run_config={**run_config, "cwd": run_config.get("cwd") or cwd})
        env = jobs_svc.sandbox_env(env, sb, user_env=job.spec.get("env") or {}, image_env=run_config.get("env"))
        launches.append(ReplicaLaunch(job_id=job.id, attempt=job.attempt, role=rep.role, index=rep.index,
                                      rank=rep.rank, argv=list(job.spec["argv"]), env=env,
                                      cwd=str(rdir) if sb is not None else cwd, replica_dir=rdir,
                                      log_path=rdir / "output.log", devices=list(rep.devices or []),
                                      node_id=rep.node_id, sandbox=sb))
    return launches


def launch_job(ctx: Any, job_id: str) -> bool:
    """Start the replicas of a `starting` job. True when it is running afterwards."""
    with _LOCK:
        if job_id in _LAUNCHING:
            return False
        _LAUNCHING.add(job_id)
    try:
        return _launch(ctx, job_id)
    finally:
        with _LOCK:
            _LAUNCHING.discard(job_id)


def _launch(ctx: Any, job_id: str) -> bool:
    with session_scope(ctx.sessions, readonly=True) as s:
        job = s.get(JobModel, job_id)
        if job is None or job.state != JobState.starting.value:
            return False
        reps = [r for r in jobs_svc.replicas_of(s, job_id) if r.attempt == job.attempt]
        nodes = {n.id: n for n in s.scalars(select(NodeModel))}
        owner = s.get(UserModel, job.owner_id)
        cancel = job.cancel_requested_at is not None
    if cancel:
        _finish(ctx, job_id, JobState.cancelled, "cancelled before it started")
        return False
    groups: dict[str, list[ReplicaLaunch]] = {}
    try:
        launches = build_launches(ctx, job, reps, nodes, owner)
        by_name = {r.name: r for r in reps}
        for ln in launches:
            groups.setdefault(by_name[ln.name].executor or "local", []).append(ln)
        handles: dict[str, ReplicaHandle] = {}
        started: list[tuple[Executor, list[ReplicaHandle]]] = []
        try:
            for ex_name, lns in groups.items():
                ex = executor_named(ctx, ex_name)
                hs = ex.submit(lns)
                started.append((ex, hs))
                handles.update({h.name: h for h in hs})
        except Exception:
            for ex, hs in started:
                ex.cancel(hs, force=True)
            raise
    except Exception as exc:
        log.exception("launching job %s failed", job_id)
        _finish(ctx, job_id, JobState.failed, f"launch failed: {exc}")
        return False
    try:
        with session_scope(ctx.sessions) as s:
            job = s.get(JobModel, job_id)
            if job is None or job.state != JobState.starting.value:
                raise StaleState(f"job {job_id} left starting while launching")
            now = utcnow()
            by_name = {r.name: r.id for r in reps}
            s.execute(update(JobReplicaModel), [
                {"id": by_name[n], "pid": h.pid, "pid_start_time": h.pid_start_time, "external_id": h.external_id,
                 "log_path": h.log_path, "replica_dir": h.replica_dir, "state": "running", "started_at": now}
                for n, h in handles.items()])
            transition(s, job, JobState.running, reason="replicas started",
                       data={"pids": {n: h.pid for n, h in handles.items()}})
        return True
    except Exception as exc:
        for ex, hs in started:
            ex.cancel(hs, force=True)
        if not isinstance(exc, StaleState):
            log.exception("recording the start of job %s failed", job_id)
            _finish(ctx, job_id, JobState.failed, f"launch failed: {exc}")
        return False


def _finish(ctx: Any, job_id: str, to: JobState, reason: str) -> None:
    try:
        with session_scope(ctx.sessions) as s:
            job = s.get(JobModel, job_id)
            if job is not None and not JobState(job.state).finished:
                transition(s, job, to, reason=reason)
    except StaleState:
        pass


# --- reconcile -------------------------------------------------------------------------------

def active_job_ids(ctx: Any) -> list[tuple[str, str]]:
    with session_scope(ctx.sessions, readonly=True) as s:
        return [(r.id, r.state) for r in s.execute(select(JobModel.id, JobModel.state).where(
            JobModel.state.in_((JobState.starting.value, JobState.running.value))).order_by(JobModel.started_at))]


def reconcile(ctx: Any) -> None:
    for job_id, state in active_job_ids(ctx):
        try:
            if state == JobState.starting.value:
                _reconcile_starting(ctx, job_id)
            else:
                reconcile_job(ctx, job_id)
        except StaleState:
            log.debug("job %s changed state while being reconciled; next pass", job_id)
        except Exception:
            log.exception("reconciling job %s failed", job_id)


def _reconcile_starting(ctx: Any, job_id: str, *, at_startup: bool = False) -> None:
    """A `starting` job that nobody in this process is launching: it was admitted by a server that
    died before it finished launching (or a launch thread crashed). Kill whatever it had started
    and launch it again."""
    with _LOCK:
        if job_id in _LAUNCHING:
            return
    with session_scope(ctx.sessions, readonly=True) as s:
        job = s.get(JobModel, job_id)
        if job is None or job.state != JobState.starting.value:
            return
        age = (utcnow() - (job.started_at or utcnow())).total_seconds()
        if not at_startup and age < ORPHAN_STARTING_S:
            return
        reps = [r for r in jobs_svc.replicas_of(s, job_id) if r.attempt == job.attempt]
    for rep in reps:
        ex = executor_for(ctx, rep)
        h = handle_of(rep)
        if h.pid is None and rep.replica_dir:
            rec = ex.read_launch_record(rep.replica_dir)
            if rec and rec.get("attempt") == job.attempt:
                h.pid, h.pid_start_time = rec.get("pid"), rec.get("pid_start_time")
        if h.pid is not None or h.external_id is not None:
            ex.cancel([h], force=True)
    with session_scope(ctx.sessions) as s:
        events.record(s, actor_id=None, kind="job.relaunch", object_type="job", object_id=job_id,
                      message="relaunching a job left in starting (server restart)")
    launch_job(ctx, job_id)


def _changed(ctx: Any, job_id: str) -> bool:
    """Read-only look: does the job need a write (a replica ended, new metrics, a cancel)? Most
    passes find nothing, and then take no write lock at all."""
    with session_scope(ctx.sessions, readonly=True) as s:
        job = s.get(JobModel, job_id)
        if job is None or job.state != JobState.running.value:
            return False
        if job.cancel_requested_at is not None:
            return True
        try:
            if jobs_svc.metrics_file(ctx.settings, job).stat().st_size != (job.metrics_offset or 0):
                return True
        except OSError:
            pass
        reps = [r for r in jobs_svc.replicas_of(s, job_id) if r.attempt == job.attempt
                and r.state in ("starting", "running")]
    for rep in reps:
        try:
            if not executor_for(ctx, rep).poll(handle_of(rep)).alive:
                return True
        except LookupError:
            return True
    return not reps


def reconcile_job(ctx: Any, job_id: str, *, force: bool = False) -> None:
    if not force and not _changed(ctx, job_id):
        return
    settings = ctx.settings
    kill_after: list[tuple[Executor, list[ReplicaHandle]]] = []
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, job_id, with_for_update=True, populate_existing=True)
        if job is None or job.state != JobState.running.value:
            return
        reps = [r for r in jobs_svc.replicas_of(s, job_id) if r.attempt == job.attempt]
        now = utcnow()
        for rep in reps:
            if rep.state not in ("starting", "running"):
                continue
            try:
                st = executor_for(ctx, rep).poll(handle_of(rep))
            except LookupError as exc:  # its node's executor is not available in this server
                st = ReplicaStatus(alive=False, exit_code=None, reason=str(exc))
            if st.alive:
                continue
            ended = ("succeeded" if st.exit_code == 0 else
                     "cancelled" if job.cancel_requested_at is not None else "failed")
            move_replica(s, rep, ended, reason=st.reason[:200],
                         values={"exit_code": st.exit_code, "message": st.reason[:1024], "finished_at": now})
        try:  # after polling: whatever an ended replica wrote before exiting is in the file now
            jobs_svc.ingest_metrics(s, settings, job)
        except Exception:
            log.exception("ingesting metrics of job %s failed", job_id)
        alive = [r for r in reps if r.state in ("starting", "running")]
        failed = [r for r in reps if r.state == "failed"]

        if job.cancel_requested_at is not None:
            if not alive:
                transition(s, job, JobState.cancelled, reason="cancelled by user")
                _TERM_SENT.pop((job.id, job.attempt), None)
                return
            key = (job.id, job.attempt)
            waited = (now - job.cancel_requested_at).total_seconds()
            force = waited >= settings.scheduler.cancel_grace_s
            if force or key not in _TERM_SENT:
                for ex, hs in _by_executor(ctx, alive):
                    ex.cancel(hs, force=force)
                if key not in _TERM_SENT:
                    _TERM_SENT[key] = time.time()
                    events.record(s, actor_id=None, kind="job.signalled", object_type="job", object_id=job.id,
                                  message="SIGTERM sent to the replicas' process groups")
                if force:
                    events.record(s, actor_id=None, kind="job.signalled", object_type="job", object_id=job.id,
                                  message=f"SIGKILL sent after {waited:.1f}s (grace "
                                          f"{settings.scheduler.cancel_grace_s:g}s)")
            return

        if failed:
            first = min(failed, key=lambda r: r.rank)
            reason = f"replica {first.name} failed: {first.message or describe_exit_code(first.exit_code)}"
            if job.kind in jobs_svc.TRAINING_KINDS:
                reason += _trainer_error(jobs_svc.output_dir(settings, job))
            if alive:
                kill_after.extend(_by_executor(ctx, alive))
                for r in alive:
                    move_replica(s, r, "failed", reason="stopped because another replica failed",
                                 values={"message": "stopped because another replica failed", "finished_at": now})
            transition(s, job, JobState.failed, reason=reason)
        elif not alive:
            if job.kind in jobs_svc.TRAINING_KINDS:
                try:
                    jobs_svc.ingest_metrics(s, settings, job, max_bytes=1 << 30)
                    with s.begin_nested():
                        mv = jobs_svc.finalize_training(s, settings, job)
                except Exception as exc:
                    log.warning("job %s: registering the output failed: %s", job_id, exc)
                    transition(s, job, JobState.failed, reason=f"training finished but registering its output "
                                                                f"failed: {getattr(exc, 'message', exc)}")
                    return
                transition(s, job, JobState.succeeded, reason="all replicas exited 0",
                           data={"output_model_version_id": mv.id})
            else:
                transition(s, job, JobState.succeeded, reason="all replicas exited 0")
    for ex, hs in kill_after:
        ex.cancel(hs, force=True)


def _by_executor(ctx: Any, reps: list[JobReplicaModel]) -> list[tuple[Executor, list[ReplicaHandle]]]:
    groups: dict[str, list[ReplicaHandle]] = {}
    for r in reps:
        groups.setdefault(r.executor or "local", []).append(handle_of(r))
    return [(executor_named(ctx, name), hs) for name, hs in groups.items()]


# --- recovery at start ----------------------------------------------------------------------

def recover(ctx: Any) -> dict[str, int]:
    """Run once when the server starts (before the first scheduling pass)."""
    stats = {"reattached": 0, "ended": 0, "relaunched": 0}
    for job_id, state in active_job_ids(ctx):
        try:
            if state == JobState.starting.value:
                _reconcile_starting(ctx, job_id, at_startup=True)
                stats["relaunched"] += 1
                continue
            with session_scope(ctx.sessions, readonly=True) as s:
                job = s.get(JobModel, job_id)
                reps = [r for r in jobs_svc.replicas_of(s, job_id) if r.attempt == job.attempt
                        and r.state in ("starting", "running")]
            for rep in reps:
                if executor_for(ctx, rep).recover(handle_of(rep)):
                    stats["reattached"] += 1
                else:
                    stats["ended"] += 1
            with session_scope(ctx.sessions) as s:
                events.record(s, actor_id=None, kind="job.recovered", object_type="job", object_id=job_id,
                              message="server restarted: replicas re-attached or resolved",
                              data={"replicas": [r.name for r in reps]})
            reconcile_job(ctx, job_id, force=True)
        except Exception:
            log.exception("recovering job %s failed", job_id)
    return stats


def _trainer_error(out: Path) -> str:
    """The trainer's own explanation (runtime/train.py writes it on failure), so `job.error` says
    why training failed instead of only an exit code."""
    try:
        message = json.loads((out / "modelyard_error.json").read_text()).get("error")
    except (OSError, ValueError, AttributeError):
        return ""
    return f" — {str(message)[:600]}" if message else ""
