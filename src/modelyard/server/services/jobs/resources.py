"""Jobs: the resources of a job's roles (replica slots, ledger parts) and the admission check that
refuses a job which could never run on an idle platform. Described in services/jobs.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, QuotaExceeded
from modelyard.core.units import gib_to_mib
from modelyard.server.orm import NodeModel
from modelyard.server.schemas.jobs import RoleSpec
from modelyard.server.services.quota import ledger

DEFAULT_ROLE = {"custom": dict(cpu=1.0, memory_mib=1024), "finetune": dict(cpu=2.0, memory_mib=8192),
                "pretrain": dict(cpu=2.0, memory_mib=8192)}


# --- resources ---------------------------------------------------------------------------------

def role_resources(role: dict[str, Any]) -> ledger.Resources:
    """Per-replica resources of a role. GPUs: whole (`gpu`), shared (`vgpu`) or MIG slices (`mig`)."""
    gpu = role.get("gpu") or {}
    num = int(gpu.get("num") or 0)
    share = (gpu.get("share") or "").strip().lower()
    mig = (gpu.get("mig") or "").strip()
    res = ledger.Resources(cpu=float(role.get("cpu") or 0), memory_mib=int(role.get("memory_mib") or 0))
    if mig:
        res.mig = max(num, 1)
    elif num and share not in ("", "none", "exclusive", "whole"):
        res.vgpu = num
    else:
        res.gpu = num
    return res


def gpu_kind(role: dict[str, Any]) -> str:
    r = role_resources(role)
    return "mig" if r.mig else "vgpu" if r.vgpu else "gpu" if r.gpu else "none"


def replica_slots(roles: list[dict[str, Any]]) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(role, index, rank, role spec) in rank order: master replicas first, then workers."""
    slots = []
    rank = 0
    for wanted in ("master", "worker"):
        for role in roles:
            if role["role"] != wanted:
                continue
            for i in range(int(role["replicas"])):
                slots.append((role["role"], i, rank, role))
                rank += 1
    return slots


def parts_for(roles: list[dict[str, Any]]) -> list[ledger.Part]:
    """One placeable part per replica; a role's node_ids (the job's placement) restrict its nodes."""
    return [ledger.Part(name=f"{r}-{i}", resources=role_resources(spec),
                        allowed=tuple(spec["node_ids"]) if spec.get("node_ids") else None)
            for r, i, _rank, spec in replica_slots(roles)]


def normalize_roles(roles: list[RoleSpec], kind: str) -> list[dict[str, Any]]:
    if not roles:
        roles = [RoleSpec(role="master", replicas=1, **DEFAULT_ROLE[kind])]
    seen: dict[str, dict[str, Any]] = {}
    for r in roles:
        if r.role in seen:
            raise BadRequest(f"role {r.role!r} given twice", code="invalid_resource")
        seen[r.role] = r.model_dump()
    if "master" not in seen:
        if seen.get("worker", {}).get("replicas", 0) < 1:
            raise BadRequest("a job needs at least one replica", code="invalid_resource")
        # the seed allows a worker-only list: its first worker acts as rank 0
        w = seen.pop("worker")
        seen["master"] = {**w, "role": "master", "replicas": 1}
        if w["replicas"] > 1:
            seen["worker"] = {**w, "replicas": w["replicas"] - 1}
    if seen["master"]["replicas"] != 1:
        raise BadRequest("the master role has exactly one replica (use workers for more)",
                         code="invalid_resource")
    return [seen[k] for k in ("master", "worker") if k in seen and seen[k]["replicas"] > 0]


def never_fits_reasons(session: Session, *, user_id: str, roles: list[dict[str, Any]],
                       counts_as_job: bool = True) -> tuple[list[str], bool]:
    """(reasons, quota_related). Empty reasons: the job fits an idle platform. counts_as_job=False
    for a serve job (it takes no job slot)."""
    reasons = ledger.never_fits(session, user_id=user_id, parts=parts_for(roles), counts_as_job=counts_as_job)
    quota_related = any("quota" in r for r in reasons)
    nodes = session.scalars(select(NodeModel).where(NodeModel.status == "ready")).all()
    largest_gpu_mib = max((int(g.get("memory_mib") or 0) for n in nodes for g in (n.gpu_info or [])), default=0)
    for role in roles:
        mem_gib = (role.get("gpu") or {}).get("mem_gib")
        if mem_gib and role_resources(role).gpu + role_resources(role).vgpu + role_resources(role).mig:
            if gib_to_mib(mem_gib) > largest_gpu_mib:
                reasons.append(f"role {role['role']} needs GPUs with {mem_gib:g} GiB of memory but the largest "
                               f"GPU of any node has {largest_gpu_mib / 1024:g} GiB")
    return reasons, quota_related


def refuse_if_never_fits(session: Session, *, user_id: str, roles: list[dict[str, Any]]) -> None:
    reasons, quota_related = never_fits_reasons(session, user_id=user_id, roles=roles)
    if not reasons:
        return
    msg = "the job can never run: " + "; ".join(reasons)
    details = {"reasons": reasons, "requested": [
        {"role": r["role"], "replicas": r["replicas"], **role_resources(r).as_dict()} for r in roles]}
    if quota_related:
        raise QuotaExceeded(msg, code="quota_exceeded", details=details)
    raise BadRequest(msg, code="never_fits", details=details)
