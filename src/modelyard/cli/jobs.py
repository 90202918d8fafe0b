"""`modelyard jobs ls|show|logs|rm|cancel|resume|run|metrics|register`, `modelyard finetune` and
`modelyard hparams`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from modelyard.cli._common import client as client
from modelyard.cli._common import (
    confirm,
    console,
    follow_option,
    is_wide,
    json_option,
    key_values,
    memory_mib,
    output_option,
    print_json,
    print_table,
    say,
    yes_option,
)

app = typer.Typer(help="Jobs: fine-tuning, pre-training and custom commands.", no_args_is_help=True)
FINISHED = ("succeeded", "failed", "cancelled")
STATE_STYLE = {"queued": "yellow", "starting": "cyan", "running": "blue", "succeeded": "green",
               "failed": "red", "cancelled": "magenta", "pending": "white"}
BLOCKS = "▁▂▃▄▅▆▇█"


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


def progress_line(job: dict) -> str:
    """'step 12/100 loss 2.314 tok/s 512' (what a pipe gets every few seconds)."""
    p = job.get("progress") or {}
    parts = []
    if p.get("step") is not None:
        total = _total_steps(p)
        parts.append(f"step {p['step']}" + (f"/{total}" if total else ""))
    for key, label, fmt in (("loss", "loss", ".3f"), ("eval_loss", "eval_loss", ".3f"),
                            ("tokens_per_s", "tok/s", ".0f")):
        if isinstance(p.get(key), int | float):
            parts.append(f"{label} {p[key]:{fmt}}")
    return " ".join(parts)


def _final_line(job: dict) -> str:
    line = f"job {job['name']} {job['state']}"
    if job.get("error"):
        line += f": {job['error']}"
    if job.get("output_model_version_id"):
        line += f" (model version {job['output_model_version_id']})"
    return line


def _reattach(job_ref: str) -> None:
    from modelyard.cli._common import err

    err(f"\nstopped following; the job keeps running. Reattach with `modelyard jobs logs -f {job_ref}` "
        f"or see it with `modelyard jobs show {job_ref}`")


def follow(c, job_id: str, interval: float = 1.0, line_every: float | None = None) -> dict:
    """Until the job ends: a live display on a terminal, else a progress line every few seconds
    (MODELYARD_FOLLOW_SECONDS, default 5) and the final state. Ctrl-C leaves the job running,
    says how to reattach and exits 130."""
    import os

    job = c.jobs.get(job_id)
    ref = job.get("name") or job_id
    try:
        if console.is_terminal:
            with Live(render(job), console=console, refresh_per_second=4, transient=False) as live:
                while job["state"] not in FINISHED:
                    time.sleep(interval)
                    job = c.jobs.get(job_id)
                    series = c.jobs.metrics(job_id, names=["loss"])["series"] if job["state"] != "queued" else {}
                    live.update(render(job, series))
        else:
            every = line_every if line_every is not None else float(os.environ.get("MODELYARD_FOLLOW_SECONDS", 5))
            last_state, last_line, last_at = None, None, 0.0
            while True:
                now = time.monotonic()
                if job["state"] != last_state:
                    say(f"{job['name']}: {job['state']}" + (f" ({job['waiting_reason']})"
                                                            if job.get("waiting_reason") else ""))
                    last_state = job["state"]
                line = progress_line(job)
                if line and line != last_line and (now - last_at >= every or job["state"] in FINISHED):
                    say(line)
                    last_line, last_at = line, now
                if job["state"] in FINISHED:
                    break
                time.sleep(interval)
                job = c.jobs.get(job_id)
    except KeyboardInterrupt:
        _reattach(ref)
        raise typer.Exit(130) from None
    say(_final_line(job))
    return job


def _job_row(j: dict, wide: bool) -> list:
    p = j.get("progress") or {}
    prog = ""
    if p.get("step") is not None:
        total = _total_steps(p)
        prog = f"{p['step']}" + (f"/{total}" if total else "")
        if p.get("loss") is not None:
            prog += f" loss {p['loss']:.3f}"
    row = [j["id"], j["name"], j["kind"], _state(j["state"]), prog, str(j["created_at"])[:19]]
    if wide:
        row += [j.get("owner_id", ""), str(j.get("attempt", "")), j.get("output_model_version_id") or "",
                (j.get("error") or j.get("waiting_reason") or "")]
    return row


@app.command("ls")
def ls(state: str = typer.Option(None, help="comma-separated states (queued, running, succeeded, failed, "
                                            "cancelled, ...)"),
       kind: str = typer.Option(None, help="finetune | pretrain | custom"),
       page: int = 1, page_size: int = 20, as_json: bool = json_option(), output: str = output_option()) -> None:
    """List your jobs (admins: everyone's)."""
    wide = is_wide(output)
    if state:  # the US spelling names the same state
        state = ",".join("cancelled" if x.strip() == "canceled" else x.strip() for x in state.split(","))
    res = client().jobs.list(state=state, kind=kind, page=page, page_size=page_size)
    if as_json:
        print_json(res["items"])
        return
    cols = ["id", "name", "kind", "state", "progress", "created"]
    if wide:
        cols += ["owner", "attempt", "model version", "note"]
    print_table(cols, [_job_row(j, wide) for j in res["items"]], title=f"{res['total']} job(s)")


@app.command("show")
def show(job: str = typer.Argument(..., help="name, id or id prefix"),
         watch: bool = typer.Option(False, "--watch", "-w", help="refresh until it ends"),
         as_json: bool = json_option()) -> None:
    """A job: state, progress, loss sparkline, replicas, events."""
    c = client()
    if watch:
        _exit_for(follow(c, job))
        return
    j = c.jobs.get(job)
    if as_json:
        print_json(j)
        return
    series = c.jobs.metrics(job, names=["loss"])["series"]
    if console.is_terminal:
        console.print(render(j, series))
    else:
        say(f"{j['name']} {j['id']} {j['state']} attempt {j.get('attempt', 1)} {progress_line(j)}".rstrip())
        if j.get("error"):
            say(f"error: {j['error']}")
        if j.get("output_model_version_id"):
            say(f"output model version: {j['output_model_version_id']}")
    print_table(["replica", "rank", "state", "node", "pid", "exit", "message"],
                [[r["name"], r["rank"], _state(r["state"]), (r["node_id"] or "")[:8], r["pid"] or "",
                  "" if r["exit_code"] is None else r["exit_code"], r["message"]] for r in j["replicas"]],
                title="replicas")
    print_table(["at", "event"], [[str(e["at"])[:19], e["message"] or e["kind"]] for e in j["events"][-15:]],
                title="events")


@app.command("logs")
def logs(job: str = typer.Argument(..., help="name, id or id prefix"),
         follow_: bool = follow_option("stream until the job ends"),
         replica: str = typer.Option(None, help="master-0, worker-1, ... (default: rank 0)")) -> None:
    """Print a replica's log (with -f, until the job ends; the exit code is the job's outcome)."""
    c = client()
    try:
        for chunk in c.jobs.logs(job, follow=follow_, replica=replica):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        _reattach(job)
        raise typer.Exit(130) from None
    if follow_:
        _exit_for(c.jobs.wait(job))


@app.command("metrics")
def metrics(job: str = typer.Argument(..., help="name, id or id prefix"),
            name: str = typer.Option(None, help="comma-separated metric names"),
            as_json: bool = json_option()) -> None:
    """Metric series (last values and a sparkline per metric)."""
    res = client().jobs.metrics(job, names=name.split(",") if name else None)
    if as_json:
        print_json(res)
        return
    print_table(["metric", "points", "last", "trend"],
                [[n, len(s["value"]), f"{s['value'][-1]:.6g}", sparkline(s["value"])]
                 for n, s in sorted(res["series"].items())])


@app.command("rm")
def rm(job: str = typer.Argument(..., help="name, id or id prefix"), yes: bool = yes_option()) -> None:
    """Delete a finished job and its files (refused while it runs or a model's lineage needs it)."""
    confirm(f"delete job {job}?", yes)
    client().jobs.delete(job)
    say(f"deleted job {job}")


@app.command("cancel")
def cancel(job: str = typer.Argument(..., help="name, id or id prefix")) -> None:
    """Cancel a job (SIGTERM, then SIGKILL after the grace period)."""
    j = client().jobs.cancel(job)
    msg = "cancelled" if j["state"] == "cancelled" else "cancel requested (SIGTERM, then SIGKILL after the grace period)"
    say(f"job {j['name']} ({j['id']}): {msg}")


@app.command("resume")
def resume(job: str = typer.Argument(..., help="name, id or id prefix"), follow_: bool = follow_option()) -> None:
    """Queue a failed or cancelled job again (training continues from its newest checkpoint)."""
    c = client()
    j = c.jobs.resume(job)
    say(f"job {j['name']} ({j['id']}) queued again as attempt {j['attempt']}")
    if follow_:
        _exit_for(follow(c, j["id"]))


@app.command("run", context_settings={"allow_interspersed_args": False})
def run(command: list[str] = typer.Argument(..., help="the command (put -- before options of the command)"),
        cpu: float = typer.Option(1.0, help="CPU cores per replica"),
        memory: str = typer.Option("1GiB", "--memory", metavar="SIZE", help="memory per replica, e.g. 512MiB, 16GiB"),
        replicas: int = typer.Option(1, help="replicas (rank 0 is the master)"),
        image: str = typer.Option(None, help="image name:tag (default: no image, the host's Python)"),
        name: str = typer.Option(None, help="job name (default: generated)"),
        follow_: bool = follow_option("print the log until the job ends")) -> None:
    """Run a custom command as a job."""
    c = client()
    cmd: Any = command[0] if len(command) == 1 else command
    j = c.jobs.run(cmd, cpu=cpu, memory_mib=memory_mib(memory), replicas=replicas, image=image, name=name)
    say(f"submitted job [bold]{j['name']}[/] ({j['id']}): {j['state']}")
    if follow_:
        try:
            for chunk in c.jobs.logs(j["id"], follow=True):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            _reattach(j["name"])
            raise typer.Exit(130) from None
        job = c.jobs.wait(j["id"])
        say(_final_line(job))
        _exit_for(job)


@app.command("register")
def register(job: str = typer.Argument(..., help="name, id or id prefix"),
             model_name: str = typer.Argument(..., help="registry model the output becomes a version of"),
             description: str = "", path: str = typer.Option(None, help="a folder inside the job's output")) -> None:
    """Register a succeeded job's output folder as a new model version."""
    v = client().jobs.register(job, model_name, description=description, path=path)
    say(f"registered {model_name}:{v.get('version')} ({v.get('id')})")


def _exit_for(job: dict) -> None:
    if job["state"] != "succeeded":
        raise typer.Exit(1)


STRATEGIES = ("lora", "full", "qlora", "pretrain")


def finetune(model: str = typer.Option(..., "--model", "-m", help="base model: name, name:version, "
                                                                 "name:alias or version id"),
             dataset: str = typer.Option(None, "--dataset", "-d", help="dataset: name, name:version or id; "
                                                                     "default: Data/ in your files"),
             strategy: str = typer.Option("lora", help="lora | full | qlora | pretrain"),
             hp: list[str] = typer.Option(None, "--hp", metavar="NAME=VALUE", help="a hyperparameter name=value (repeatable); "
                                                              "`modelyard hparams` lists them"),
             set_: list[str] = typer.Option(None, "--set", hidden=True),
             config: Path = typer.Option(None, help="a config.json (the seed's structure) on this machine",
                                         exists=True, dir_okay=False),
             cpu: float = typer.Option(None, help="CPU cores"),
             memory: str = typer.Option(None, "--memory", metavar="SIZE", help="memory, e.g. 16GiB"),
             gpus: int = typer.Option(0, help="GPUs"),
             name: str = typer.Option(None, help="job name (default: generated)"),
             output_model: str = typer.Option(None, help="registry model for the result "
                                                         "(default: <base>-<strategy>)"),
             follow_: bool = follow_option()) -> None:
    """Fine-tune (or pre-train) a registry model and register the result as a new model version.

    Hyperparameters: `modelyard hparams` lists every name with its type, default and range."""
    import json

    s = strategy.strip().lower()
    if s not in STRATEGIES:
        raise typer.BadParameter(f"{strategy!r}: use one of {', '.join(STRATEGIES)}", param_hint="--strategy")
    c = client()
    cfg = json.loads(config.read_text()) if config else None
    common = key_values((hp or []) + (set_ or [])) or None
    j = c.jobs.finetune(model, dataset, strategy=s, config=cfg, hyperparameters=common, cpu=cpu,
                        memory_mib=memory_mib(memory), gpus=gpus, name=name, output_model_name=output_model)
    say(f"submitted {j['kind']} job [bold]{j['name']}[/] ({j['id']}): {j['state']}")
    if follow_:
        _exit_for(follow(c, j["id"]))


def hparams(strategy: str = typer.Option(None, help="only those of lora | full | qlora | pretrain"),
            as_json: bool = json_option()) -> None:
    """Every hyperparameter a training job takes: type, default, range and what it does."""
    res = client().hparams(strategy)
    if as_json:
        print_json(res)
        return
    rows = res["hyperparameters"]
    print_table(["name", "type", "default", "range", "strategies", "description"],
                [[h["name"], h.get("type", ""), "" if h.get("default") is None else h["default"], _range(h),
                  ",".join(h.get("strategies") or []), h.get("description", "")] for h in rows],
                caption="strategies: " + "; ".join(f"{s['name']}: {s['description']}"
                                                   for s in res.get("strategies") or []))


def _range(h: dict) -> str:
    if h.get("choices"):
        return " | ".join(str(c) for c in h["choices"])
    r = h.get("range")
    if isinstance(r, list | tuple) and len(r) == 2:
        lo, hi = ("" if v is None else f"{v:g}" if isinstance(v, int | float) else str(v) for v in r)
        return f"{lo}..{hi}"
    return "" if r is None else str(r)
