"""Monitor data (ModelArts' service monitor): per replica, cpu and memory of its process tree
(psutil) and the request counters of its /metrics; summed per version."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.server.orm.jobs import JobReplicaModel
from modelyard.server.orm.serving import ServiceModel
from modelyard.server.services.serving import service as svc_mod

REQUEST_METRICS = ("requests", "request_success", "request_count", "http_requests")


def _tree(pid: int | None) -> list[psutil.Process]:
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _usage(pids: dict[str, int | None], window_s: float = 0.2) -> dict[str, tuple[float, float]]:
    """{key: (cpu cores, memory MiB)} of each process tree: CPU time over one shared short window."""
    trees = {k: _tree(pid) for k, pid in pids.items()}
    before = {k: _cpu_seconds(t) for k, t in trees.items()}
    t0 = time.monotonic()
    if any(trees.values()):
        time.sleep(window_s)
    dt = max(time.monotonic() - t0, 1e-3)
    out = {}
    for k, procs in trees.items():
        mem = 0.0
        for p in procs:
            try:
                mem += p.memory_info().rss / (1 << 20)
            except psutil.Error:
                continue
        out[k] = (round(max(0.0, _cpu_seconds(procs) - before[k]) / dt, 3), round(mem, 1))
    return out


def _scrape(socket_path: str, timeout: float = 1.0) -> dict[str, float]:
    """Request count and mean latency from a replica's prometheus text, when it has them."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), timeout=timeout) as c:
            r = c.get("http://replica/metrics")
        if not r.is_success:
            return {}
        fams = list(text_string_to_metric_families(r.text))
    except (httpx.HTTPError, OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    lat_sum = lat_count = 0.0
    for fam in fams:
        for smp in fam.samples:
            name = smp.name
            if name.endswith("_total") and any(k in name for k in REQUEST_METRICS):
                out["requests"] = out.get("requests", 0.0) + smp.value
            if "latency" in name or "duration" in name or "e2e_request" in name:
                if name.endswith("_sum"):
                    lat_sum += smp.value
                elif name.endswith("_count"):
                    lat_count += smp.value
    if lat_count:
        out["latency_ms_mean"] = round(1000.0 * lat_sum / lat_count, 2)
    return out


def monitor(session: Session, svc: ServiceModel) -> dict[str, Any]:
    vers = svc_mod.versions_of(session, svc.id)
    reps = [r for r in svc_mod.replicas_of(session, svc.id) if r.state in ("starting", "ready")]
    per_version: dict[str, dict[str, Any]] = {
        v.id: {"version": v.number, "model_version_id": v.model_version_id, "cpu_core_total": v.cpu * v.replicas,
               "cpu_memory_total": v.memory_mib * v.replicas, "gpu_total": v.gpu * v.replicas,
               "cpu_core_usage": 0.0, "cpu_memory_usage": 0.0, "requests": 0.0,
               "model_instance_count": v.replicas, "model_running_instance_count": 0} for v in vers}
    replicas = []
    job_ids = [r.job_id for r in reps if r.job_id]
    pids = dict(session.execute(select(JobReplicaModel.job_id, JobReplicaModel.pid).where(
        JobReplicaModel.job_id.in_(job_ids))).all()) if job_ids else {}
    usage = _usage({r.id: pids.get(r.job_id) for r in reps})
    for r in reps:
        cpu, mem = usage.get(r.id, (0.0, 0.0))
        scraped = _scrape(r.socket_path) if r.state == "ready" else {}
        row = {"replica_id": r.id, "index": r.index, "state": r.state, "cpu_core_usage": cpu,
               "cpu_memory_usage": mem, **scraped}
        replicas.append(row)
        agg = per_version.get(r.version_id)
        if agg is not None:
            agg["cpu_core_usage"] += cpu
            agg["cpu_memory_usage"] += mem
            agg["requests"] += scraped.get("requests", 0.0)
            agg["model_running_instance_count"] += 1 if r.state == "ready" else 0
    return {"service_id": svc.id, "service_name": svc.name, "invocation_times": svc.invocations,
            "failed_times": svc.failures, "service_instance_count": sum(v.replicas for v in vers),
            "service_running_instance_count": sum(1 for r in reps if r.state == "ready"),
            "monitors": list(per_version.values()), "replicas": replicas}
