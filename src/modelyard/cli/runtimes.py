"""`modelyard runtimes`: list runtimes and prepare one (`install vllm`), with progress."""

from __future__ import annotations

import json
import sys
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelyard.cli._common import client as _client
from modelyard.cli._common import human_size

app = typer.Typer(help="Runtimes a service can run on (transformers, vllm) and preparing them.",
                  no_args_is_help=True)
console = Console()


@app.command("ls")
def ls(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Each runtime: ready or not, its size, and how to prepare it."""
    rows = _client().runtimes.list()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    t = Table("runtime", "kind", "status", "size", "how to prepare")
    for r in rows:
        status = r["status"]
        if status == "preparing":
            status += f" ({(r.get('progress') or {}).get('phase', '')})"
        t.add_row(r["name"], r["kind"], status, human_size(r.get("size_bytes")) if r.get("size_bytes") else "-",
                  "-" if r["ready"] else r["prepare"])
    console.print(t)


def _fraction(st: dict) -> tuple[float, str]:
    p = st.get("progress") or {}
    total, done = p.get("total") or 0, p.get("done") or 0
    return (done / total if total else 0.0), p.get("phase", st.get("status", ""))


@app.command("install")
def install(name: str = typer.Argument(..., help="runtime name, e.g. vllm"),
            poll: float = typer.Option(1.0, help="seconds between progress polls")) -> None:
    """Prepare a runtime's environment on the server (admin) and follow its progress."""
    c = _client()
    st = c.runtimes.install(name)
    if sys.stdout.isatty():
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[phase]}"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"preparing {name}", total=1.0, phase="")
            while st["status"] == "preparing":
                frac, phase = _fraction(st)
                bar.update(task, completed=frac, phase=phase)
                time.sleep(poll)
                st = c.runtimes.get(name)
            bar.update(task, completed=1.0 if st["ready"] else bar.tasks[0].completed, phase=st["status"])
    else:
        last = None
        while st["status"] == "preparing":
            frac, phase = _fraction(st)
            line = f"{name}: {phase} {frac:.0%}"
            if line != last:
                typer.echo(line)
                last = line
            time.sleep(poll)
            st = c.runtimes.get(name)
    if st["ready"]:
        size = human_size(st.get("size_bytes")) if st.get("size_bytes") else "built in"
        console.print(f"[green]{name} is ready[/] ({size})")
        return
    console.print(f"[red]{name} is {st['status']}[/]: {st.get('error', '')}")
    if st.get("log_tail"):
        console.print(st["log_tail"][-2000:], markup=False, highlight=False)
    raise typer.Exit(1)
