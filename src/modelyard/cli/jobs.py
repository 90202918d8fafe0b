"""`modelyard jobs ls|show|logs|cancel|resume|run|metrics|register` and `modelyard finetune`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

app = typer.Typer(help="Jobs: fine-tuning, pre-training and custom commands.", no_args_is_help=True)
console = Console()
FINISHED = ("succeeded", "failed", "cancelled")
STATE_STYLE = {"queued": "yellow", "starting": "cyan", "running": "blue", "succeeded": "green",
               "failed": "red", "cancelled": "magenta", "pending": "white"}
BLOCKS = "▁▂▃▄▅▆▇█"


def client():
    from modelyard.sdk import Client

    return Client()


def sparkline(values: list[float], width: int = 40) -> str:
    vals = [v for v in values if v == v]  # drop NaN
    if not vals:
        return ""
    if len(vals) > width:  # average into width buckets
        step = len(vals) / width
        vals = [sum(vals[int(i * step):max(int((i + 1) * step), int(i * step) + 1)])
                / len(vals[int(i * step):max(int((i + 1) * step), int(i * step) + 1)]) for i in range(width)]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(BLOCKS[min(len(BLOCKS) - 1, int((v - lo) / span * (len(BLOCKS) - 1)))] for v in vals)


def _state(s: str) -> Text:
    return Text(s, style=STATE_STYLE.get(s, ""))


def _total_steps(progress: dict) -> int | None:
    for k in ("max_steps", "total_steps"):
        v = progress.get(k)
        if isinstance(v, int | float) and v > 0:
            return int(v)
    return None


def render(job: dict, series: dict[str, Any] | None = None) -> Group:
    p = job.get("progress") or {}
    head = Text.assemble((job["name"], "bold"), f"  {job['id']}  ", _state(job["state"]),
                         f"  attempt {job.get('attempt', 1)}")
    parts: list[Any] = [head]
    step, total = p.get("step"), _total_steps(p)
    line = Text()
    if step is not None:
        line.append(f"step {step}" + (f"/{total}" if total else ""))
        if p.get("epoch") is not None:
            line.append(f"  epoch {p['epoch']:.2f}")
        if p.get("loss") is not None:
            line.append(f"  loss {p['loss']:.4f}")
        if p.get("eval_loss") is not None:
            line.append(f"  eval_loss {p['eval_loss']:.4f}")
        if p.get("tokens_per_s") is not None:
            line.append(f"  {p['tokens_per_s']:.0f} tok/s")
    if total and step is not None:
        row = Table.grid(padding=(0, 1))
        row.add_row(ProgressBar(total=total, completed=min(step, total), width=40), line)
        parts.append(row)
    elif line:
        parts.append(line)
    loss = ((series or {}).get("loss") or {}).get("value") or []
    if loss:
        parts.append(Text.assemble(("loss ", "dim"), (sparkline(loss), "cyan"),
                                   (f"  {loss[0]:.3f} → {loss[-1]:.3f}", "dim")))
    if job.get("waiting_reason") and job["state"] == "queued":
        parts.append(Text(job["waiting_reason"], style="yellow"))
    if job.get("error"):
        parts.append(Text(job["error"], style="red"))
    if job.get("output_model_version_id"):
        parts.append(Text(f"output model version: {job['output_model_version_id']}", style="green"))
    return Group(*parts)


def follow(c, job_id: str, interval: float = 1.0) -> dict:
    job = c.jobs.get(job_id)
    with Live(render(job), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            job = c.jobs.get(job_id)
            series = c.jobs.metrics(job_id, names=["loss"])["series"] if job["state"] != "queued" else {}
            live.update(render(job, series))
            if job["state"] in FINISHED:
                break
            time.sleep(interval)
    if not console.is_terminal:
        console.line()
    return job


@app.command("ls")
def ls(state: str = typer.Option(None, help="comma-separated states"), kind: str = typer.Option(None),
       page: int = 1, page_size: int = 20) -> None:
    """List your jobs (admins: everyone's)."""
    res = client().jobs.list(state=state, kind=kind, page=page, page_size=page_size)
    t = Table("id", "name", "kind", "state", "progress", "created", title=f"{res['total']} job(s)")
    for j in res["items"]:
        p = j.get("progress") or {}
        prog = ""
        if p.get("step") is not None:
            total = _total_steps(p)
            prog = f"{p['step']}" + (f"/{total}" if total else "")
            if p.get("loss") is not None:
                prog += f" loss {p['loss']:.3f}"
        t.add_row(j["id"], j["name"], j["kind"], _state(j["state"]), prog, str(j["created_at"])[:19])
    console.print(t)


@app.command("show")
def show(job_id: str, watch: bool = typer.Option(False, "--watch", "-w", help="refresh until it ends"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """A job: state, progress, loss sparkline, replicas, events."""
    c = client()
    if watch:
        follow(c, job_id)
        return
    job = c.jobs.get(job_id)
    if as_json:
        console.print_json(json.dumps(job, default=str))
        return
    series = c.jobs.metrics(job_id, names=["loss"])["series"]
    console.print(render(job, series))
    t = Table("replica", "rank", "state", "node", "pid", "exit", "message", title="replicas")
    for r in job["replicas"]:
        t.add_row(r["name"], str(r["rank"]), _state(r["state"]), (r["node_id"] or "")[:8], str(r["pid"] or ""),
                  "" if r["exit_code"] is None else str(r["exit_code"]), r["message"])
    console.print(t)
    ev = Table("at", "event", title="events")
    for e in job["events"][-15:]:
        ev.add_row(str(e["at"])[:19], e["message"] or e["kind"])
    console.print(ev)


@app.command("logs")
def logs(job_id: str, follow_: bool = typer.Option(False, "--follow", "-f", help="stream until the job ends"),
         replica: str = typer.Option(None, help="master-0, worker-1, ... (default: rank 0)")) -> None:
    """Print a replica's log."""
    for chunk in client().jobs.logs(job_id, follow=follow_, replica=replica):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@app.command("metrics")
def metrics(job_id: str, name: str = typer.Option(None, help="comma-separated metric names")) -> None:
    """Metric series (last values and a sparkline per metric)."""
    res = client().jobs.metrics(job_id, names=name.split(",") if name else None)
    t = Table("metric", "points", "last", "trend")
    for n, s in sorted(res["series"].items()):
        t.add_row(n, str(len(s["value"])), f"{s['value'][-1]:.6g}", sparkline(s["value"]))
    console.print(t)


@app.command("cancel")
def cancel(job_id: str) -> None:
    j = client().jobs.cancel(job_id)
    msg = "cancelled" if j["state"] == "cancelled" else "cancel requested (SIGTERM, then SIGKILL after the grace period)"
    console.print(f"job {j['id']}: {msg}")


@app.command("resume")
def resume(job_id: str, follow_: bool = typer.Option(False, "--follow", "-f")) -> None:
    """Queue a failed or cancelled job again (training continues from its newest checkpoint)."""
    c = client()
    j = c.jobs.resume(job_id)
    console.print(f"job {j['id']} queued again as attempt {j['attempt']}")
    if follow_:
        _exit_for(follow(c, job_id))


@app.command("run")
def run(command: list[str] = typer.Argument(..., help="the command (use -- before options of the command)"),
        cpu: float = 1.0, memory_mib: int = 1024, replicas: int = 1, image: str = typer.Option(None),
        name: str = typer.Option(None), follow_: bool = typer.Option(False, "--follow", "-f")) -> None:
    """Run a custom command as a job."""
    c = client()
    cmd: Any = command[0] if len(command) == 1 else command
    j = c.jobs.run(cmd, cpu=cpu, memory_mib=memory_mib, replicas=replicas, image=image, name=name)
    console.print(f"submitted job [bold]{j['id']}[/] ({j['state']})")
    if follow_:
        for chunk in c.jobs.logs(j["id"], follow=True):
            sys.stdout.write(chunk)
        _exit_for(c.jobs.wait(j["id"]))


@app.command("register")
def register(job_id: str, model_name: str, description: str = "", path: str = typer.Option(None)) -> None:
    """Register a succeeded job's output folder as a new model version."""
    v = client().jobs.register(job_id, model_name, description=description, path=path)
    console.print(f"registered {model_name} version {v.get('version')} ({v.get('id')})")


def _exit_for(job: dict) -> None:
    if job["state"] != "succeeded":
        raise typer.Exit(1)


def finetune(model: str = typer.Option(..., "--model", "-m", help="model name, name:version or version id"),
             dataset: str = typer.Option(None, "--dataset", "-d", help="dataset name/id or version id; "
                                                                     "default: Data/ in your files"),
             strategy: str = typer.Option("lora", help="lora | full"),
             config: Path = typer.Option(None, help="a config.json (the seed's structure) on this machine"),
             pretrain: bool = typer.Option(False, help="pre-train (causal LM on plain text)"),
             set_: list[str] = typer.Option(None, "--set", help="a hyperparameter, name=value (repeatable)"),
             cpu: float = typer.Option(None), memory_mib: int = typer.Option(None), gpus: int = 0,
             name: str = typer.Option(None), output_model: str = typer.Option(None, help="registry model name"),
             follow_: bool = typer.Option(False, "--follow", "-f", help="show progress until it ends")) -> None:
    """Fine-tune a registry model (LoRA or full) and register the result as a new model version."""
    c = client()
    cfg = json.loads(config.read_text()) if config else None
    common = None
    if set_:
        common = {}
        for item in set_:
            k, _, v = item.partition("=")
            common[k.strip()] = v.strip()
    strat = {"lora": "LoRA", "full": "FineTune", "finetune": "FineTune"}.get(strategy.lower(), strategy)
    j = c.jobs.finetune(model, dataset, strategy=strat, config=cfg, pretrain=pretrain, hyperparameters=common,
                        cpu=cpu, memory_mib=memory_mib, gpus=gpus, name=name, output_model_name=output_model)
    console.print(f"submitted {j['kind']} job [bold]{j['name']}[/] ({j['id']}): {j['state']}")
    if follow_:
        job = follow(c, j["id"])
        if job["state"] == "succeeded":
            console.print(f"[green]done[/]: model version {job.get('output_model_version_id')}")
        _exit_for(job)
