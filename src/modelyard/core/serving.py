"""The serving contracts, as plain data shared by the serving service, the runtimes and the gateway.

- `LaunchPlan`: what a runtime planner (transformers, vllm, template) says one service replica
  runs: its command inside the replica's sandbox, the Unix socket it answers HTTP on, its probes.
  The serving service turns it into a job replica (same scheduler, ledger and sandbox as jobs).
- `RouteEntry` / `RouteVersion`: what the gateway routes by, a snapshot of the ready replicas of
  every service, read in one query (services/serving.route_snapshot) and refreshed on change, so
  the proxy needs no database query per request.

Replicas answer on Unix sockets, never on TCP ports: a sandboxed replica has only its own loopback
(no route from the host), while a socket file in a folder bound into the sandbox is reachable
from the server. Keep socket paths under 108 bytes (the kernel's sun_path limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LaunchPlan:
    argv: list[str]  # run inside the replica's sandbox
    socket_path: str  # host path of the Unix socket the replica serves HTTP on
    env: dict[str, str] = field(default_factory=dict)  # added to the replica's env
    ready_path: str = "/readyz"  # GET -> 200 once it can serve (weights loaded)
    live_path: str = "/livez"  # GET -> 200 while the process is healthy
    boot_timeout_s: float = 600.0  # not ready within this -> the replica fails
    # extra host paths the sandbox must show (a prepared runtime environment, a template's install
    # dir): (path, writable)
    binds: list[tuple[str, bool]] = field(default_factory=list)
    served_names: list[str] = field(default_factory=list)  # the OpenAI `model` names it answers
    kind: str = "openai"  # "openai" (a model server) | "http" (a template service, proxied by path)


@dataclass
class RouteReplica:
    replica_id: str
    socket_path: str
    served_names: list[str] = field(default_factory=list)


@dataclass
class RouteVersion:
    version_id: str
    number: int  # the version's number within its service (service:NUMBER)
    weight: int  # traffic share in percent (the seed's `rate`); the versions of a service sum to 100
    replicas: list[RouteReplica] = field(default_factory=list)  # ready ones only


@dataclass
class RouteEntry:
    service_id: str
    name: str
    owner_id: str
    kind: str  # "openai" | "http"
    state: str
    versions: list[RouteVersion] = field(default_factory=list)
