"""`modelyard serve deploy|ls|show|logs|events|scale|start|stop|rm`: inference services."""

from __future__ import annotations

import json
import re
import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelyard.cli._common import client as _client
from modelyard.core.units import parse_bytes

app = typer.Typer(help="Inference services: deploy registry models as OpenAI-compatible endpoints.",
                  no_args_is_help=True)
console = Console()
STATE_STYLE = {"saved": "white", "deploying": "cyan", "running": "green", "degraded": "yellow",
               "stopping": "magenta", "stopped": "white", "failed": "red", "ready": "green", "pending": "white",
               "starting": "cyan", "draining": "magenta", "exited": "white"}


def client():
    return _client()


def _state(s: str) -> Text:
    return Text(s, style=STATE_STYLE.get(s, ""))


def _replicas(text: str | None) -> dict:
    """'2' -> {replicas: 2}; '1..3' -> {min_replicas: 1, max_replicas: 3, replicas: 1}."""
    if not text:
        return {}
    m = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?", text)
    if not m:
        raise typer.BadParameter(f"{text!r}: give N or MIN..MAX")
    if m.group(2) is None:
        return {"replicas": int(m.group(1))}
    return {"min_replicas": int(m.group(1)), "max_replicas": int(m.group(2)), "replicas": int(m.group(1))}


def _memory_mib(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text) if text.strip().isdigit() else max(1, parse_bytes(text) >> 20)
    except ValueError as exc:
        raise typer.BadParameter(f"memory {text!r}: {exc}") from None


@app.command("deploy")
def deploy(model: str = typer.Argument(..., help="MODEL[:VERSION] or a model version id"),
           name: str = typer.Option(..., "--name", "-n", help="the service's name (clients send it as `model`)"),
           runtime: str = typer.Option("auto", help="auto | transformers | vllm"),
           replicas: str | None = typer.Option(None, help="N, or MIN..MAX (autoscaling bounds, stored)"),
           cpu: float | None = typer.Option(None, help="CPU cores per replica"),
           memory: str | None = typer.Option(None, help="memory per replica: 4GiB, 512MiB (a bare number is MiB)"),
           gpu: int = typer.Option(0, help="GPUs per replica"),
           adapter: list[str] = typer.Option([], help="NAME=MODEL:VERSION, a LoRA adapter served by name"),
           env: list[str] = typer.Option([], help="NAME=VALUE for each replica"),
           save_only: bool = typer.Option(False, "--save-only", help="save without starting"),
           wait: bool = typer.Option(False, help="wait until it is running (or failed)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Deploy a registry model as a service."""
    adapters = {}
    for a in adapter:
        k, sep, v = a.partition("=")
        if not sep or not k or not v:
            raise typer.BadParameter(f"--adapter {a!r}: give NAME=MODEL:VERSION")
        adapters[k] = v
    envs = {}
    for e in env:
        k, sep, v = e.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"--env {e!r}: give NAME=VALUE")
        envs[k] = v
    version = {"model": model, "runtime": runtime, "gpu": gpu, **_replicas(replicas)}
    if cpu is not None:
        version["cpu"] = cpu
    mem = _memory_mib(memory)
    if mem is not None:
        version["memory_mib"] = mem
    if adapters:
        version["adapters"] = adapters
    if envs:
        version["env"] = envs
    c = client()
    d = c.services.create(name, [version], start=not save_only)
    if wait and not save_only:
        d = c.services.wait(d["id"])
    if as_json:
        print(json.dumps(d, indent=2, default=str))
        return
    console.print(Text.assemble("service ", (d["name"], "bold"), f" {d['id']} ", _state(d["state"])))
    console.print(f"OpenAI base URL: {d['access_address']}   model: {d['name']}")
    if d["state"] == "failed":
        console.print(f"[red]{d.get('error') or ''}[/]")
        raise typer.Exit(1)


@app.command("ls")
def ls(q: str | None = typer.Option(None, help="name contains"), as_json: bool = typer.Option(False, "--json")):
    """Your services."""
    page = client().services.list(q=q, page_size=200)
    if as_json:
        print(json.dumps(page, indent=2, default=str))
        return
    t = Table("id", "name", "state", "ready", "versions", "created")
    for s in page["items"]:
        t.add_row(s["id"][:12], s["name"], _state(s["state"]), f"{s['ready_replicas']}/{s['desired_replicas']}",
                  str(s["version_count"]), str(s["created_at"])[:19])
    console.print(t)


@app.command("show")
def show(ref: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A service: state, address, versions, replicas."""
    d = client().services.get(ref)
    if as_json:
        print(json.dumps(d, indent=2, default=str))
        return
    console.print(Text.assemble((d["name"], "bold"), f"  {d['id']}  ", _state(d["state"]),
                                f"  {d['progress']}%  calls {d['invocations']} (failed {d['failures']})"))
    console.print(f"OpenAI base URL: {d['access_address']}   models: {', '.join(d['model_names'])}")
    if d.get("error"):
        console.print(f"[red]{d['error']}[/]")
    t = Table("version", "state", "runtime", "model version", "weight", "replicas (min..max)", "ready", "cpu",
              "memory")
    for v in d["versions"]:
        sc, r = v["scaling"], v["resources"]
        t.add_row(str(v["number"]), _state(v["state"]), v["runtime"], str(v["model_version_id"] or "-"),
                  f"{v['weight']}%", f"{sc['replicas']} ({sc['min_replicas']}..{sc['max_replicas']})",
                  str(v["instances"]["ready"]), f"{r['cpu']:g}", f"{r['memory_mib']} MiB")
    console.print(t)
    t = Table("replica", "version", "state", "job", "ready at", "message")
    for r in d["replicas"]:
        t.add_row(r["id"][:12], str(r["version"]), _state(r["state"]), (r["job_id"] or "-")[:12],
                  str(r["ready_at"] or "-")[:19], (r["message"] or "").splitlines()[0][:60] if r["message"] else "")
    console.print(t)


@app.command("logs")
def logs(ref: str, replica: str | None = typer.Option(None, help="replica id, prefix or index"),
         follow: bool = typer.Option(False, "--follow", "-f")) -> None:
    """A replica's log (default: the newest live replica)."""
    for chunk in client().services.logs(ref, replica=replica, follow=follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@app.command("events")
def events(ref: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The service's event log: deployment stages and failures."""
    evs = client().services.events(ref)
    if as_json:
        print(json.dumps(evs, indent=2, default=str))
        return
    for e in evs:
        style = "red" if e["event_type"] == "abnormal" else ""
        console.print(Text.assemble(str(e["at"])[:19], "  ", (e["message"], style)))


@app.command("scale")
def scale(ref: str, replicas: str = typer.Argument(..., help="N, or MIN..MAX"),
          version: int | None = typer.Option(None, help="one version (default: every version)")) -> None:
    """Set the replica count (or the autoscaling bounds)."""
    d = client().services.scale(ref, version=version, **_replicas(replicas))
    console.print(Text.assemble((d["name"], "bold"), " ", _state(d["state"]), "  ", ", ".join(
        f"v{v['number']}: {v['scaling']['replicas']}" for v in d["versions"])))


@app.command("start")
def start(ref: str) -> None:
    d = client().services.start(ref)
    console.print(Text.assemble((d["name"], "bold"), " ", _state(d["state"])))


@app.command("stop")
def stop(ref: str) -> None:
    """Drain every replica; resources are released as they end."""
    d = client().services.stop(ref)
    console.print(Text.assemble((d["name"], "bold"), " ", _state(d["state"])))


@app.command("rm")
def rm(ref: str, yes: bool = typer.Option(False, "--yes", "-y", help="stop it first if needed, no question")):
    """Delete a service (a running one is stopped first with -y)."""
    c = client()
    d = c.services.get(ref)
    if not yes and not typer.confirm(f"delete service {d['name']} ({d['id']})?"):
        raise typer.Exit(1)
    if d["state"] not in ("saved", "stopped", "failed"):
        c.services.stop(d["id"])
        d = c.services.wait(d["id"], ("stopped",), timeout=120, poll_s=0.3)
    c.services.delete(d["id"])
    console.print(f"deleted service {d['name']}")
