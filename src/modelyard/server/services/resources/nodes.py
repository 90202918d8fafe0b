"""Nodes: the local machine registers itself with its real CPU, memory and GPUs."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess

import psutil
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest
from modelyard.server.orm import NodeModel, ResourceGroupModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services import events

NODE_STATUSES = ("ready", "cordoned", "offline")


def detect_gpus() -> list[dict]:
    """nvidia-smi when present; each GPU with name, memory and compute capability."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap,mig.mode.current",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "memory_mib": int(float(parts[1] or 0)), "compute_capability": parts[2],
                         "mig_enabled": len(parts) > 3 and parts[3].lower() == "enabled"})
    return gpus


def register_local_node(session: Session) -> NodeModel:
    """Idempotent: creates or refreshes the row for this host (default resource group 'default')."""
    group = session.scalar(select(ResourceGroupModel).where(ResourceGroupModel.key == "default"))
    if group is None:
        group = ResourceGroupModel(name="Default", key="default", description="this machine")
        session.add(group)
        session.flush()
    name = socket.gethostname() or "local"
    node = session.scalar(select(NodeModel).where(NodeModel.name == name))
    gpus = detect_gpus()
    facts = dict(cpu=float(psutil.cpu_count(logical=True) or 1),
                 memory_mib=int(psutil.virtual_memory().total // (1024 * 1024)),
                 gpu=len(gpus), mig=sum(1 for g in gpus if g.get("mig_enabled")), gpu_info=gpus,
                 arch=platform.machine(), heartbeat_at=utcnow())
    if node is None:
        node = NodeModel(name=name, group_id=group.id, executor="local", status="ready", **facts)
        session.add(node)
    else:
        for k, v in facts.items():
            setattr(node, k, v)
        if node.status != "cordoned":  # an admin's cordon outlives a restart
            node.status = "ready"
    session.flush()
    return node


# --- admin operations -------------------------------------------------------------------------

def find_node(session: Session, ref: str) -> NodeModel:
    """A node by id or name; 404 if neither."""
    from modelyard.server.services.common.refs import resolve_ref

    return resolve_ref(session, NodeModel, ref, None, what="node", owned=False, not_found_code="node_not_found")


def set_status(session: Session, *, actor_id: str | None, node: NodeModel, status: str) -> NodeModel:
    """cordon (status 'cordoned': the ledger places nothing new there; live allocations stay) or
    uncordon ('ready')."""
    if status not in NODE_STATUSES:
        raise BadRequest(f"node status must be one of {NODE_STATUSES}", code="invalid_status")
    if node.status != status:
        before = node.status
        node.status = status
        session.flush()
        kind = {"cordoned": "node.cordoned", "ready": "node.uncordoned"}.get(status, "node.status_changed")
        events.record(session, actor_id=actor_id, kind=kind, object_type="node", object_id=node.id,
                      message=f"node {node.name}: {before} -> {status}", data={"before": before, "after": status})
    return node


def move_to_group(session: Session, *, actor_id: str | None, node: NodeModel, group: ResourceGroupModel | None) -> None:
    before = node.group_id
    node.group_id = group.id if group else None
    session.flush()
    if before != node.group_id:
        events.record(session, actor_id=actor_id, kind="node.group_changed", object_type="node", object_id=node.id,
                      data={"before": before, "after": node.group_id})
