"""`modelyard runtimes`: the runtimes a service can run on (`ls`, `show`) and preparing one
(`install vllm`), following its progress under the README's "CLI conventions"."""

from __future__ import annotations

import time

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from modelyard.cli._common import (
    client,
    console,
    err,
    human_size,
    is_wide,
    json_option,
    output_option,
    print_json,
    print_table,
    say,
)

app = typer.Typer(help="Runtimes a service can run on (transformers, vllm) and preparing them.",
                  no_args_is_help=True)


def _size(r: dict) -> str:
    return human_size(r["size_bytes"]) if r.get("size_bytes") else "-"


def _status(r: dict) -> str:
    if r["status"] == "preparing":
        return f"preparing ({(r.get('progress') or {}).get('phase', '')})"
    return r["status"]


def _row(r: dict, wide: bool) -> list:
    row = [r["name"], r["kind"], _status(r), _size(r), "-" if r["ready"] else r["prepare"]]
    if wide:
        row += [r.get("label") or "", " ".join(r.get("requirements") or []), r.get("path") or "",
                r.get("error") or ""]
    return row


@app.command("ls")
def ls(as_json: bool = json_option(), output: str = output_option()) -> None:
    """Each runtime: ready or not, its size, and how to prepare it."""
    wide = is_wide(output)
    rows = client().runtimes.list()
    if as_json:
        print_json(rows)
        return
    cols = ["name", "kind", "status", "size", "how to prepare"]
    if wide:
        cols += ["label", "requirements", "path", "error"]
    print_table(cols, [_row(r, wide) for r in rows])


@app.command("show")
def show(name: str = typer.Argument(..., help="runtime name, e.g. vllm"), as_json: bool = json_option()) -> None:
    """One runtime: status, size, where its environment is, what it needs, the last preparation."""
    r = client().runtimes.get(name)
    if as_json:
        print_json(r)
        return
    fields = [("name", r["name"]), ("kind", r["kind"]), ("status", _status(r)), ("size", _size(r)),
              ("description", r.get("description")), ("how to prepare", "-" if r["ready"] else r["prepare"])]
    for key in ("label", "path", "started_at", "finished_at", "seconds", "error"):
        if r.get(key) not in (None, ""):
            fields.append((key.replace("_", " "), r[key]))
    if r.get("requirements"):
        fields.append(("requirements", " ".join(r["requirements"])))
    print_table(["field", "value"], [[k, v] for k, v in fields])
    if r.get("log_tail") and not r["ready"]:
        say("last log lines:")
        console.print(r["log_tail"][-2000:], markup=False, highlight=False)


def _fraction(st: dict) -> tuple[float, str]:
    p = st.get("progress") or {}
    total, done = p.get("total") or 0, p.get("done") or 0
    return (done / total if total else 0.0), p.get("phase", st.get("status", ""))


def _follow(c, name: str, st: dict, poll: float) -> dict:
    """Until the preparation ends: a progress bar on a terminal, else one line per change of phase
    or fraction. Ctrl-C leaves the preparation running on the server and exits 130."""
    try:
        if console.is_terminal:
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
                    say(line)
                    last = line
                time.sleep(poll)
                st = c.runtimes.get(name)
    except KeyboardInterrupt:
        err(f"\nstopped following; {name} keeps preparing on the server. "
            f"See it with `modelyard runtimes show {name}`")
        raise typer.Exit(130) from None
    return st


@app.command("install")
def install(name: str = typer.Argument(..., help="runtime name, e.g. vllm"),
            follow: bool = typer.Option(True, "--follow/--no-follow", "-f",
                                        help="show progress until the preparation ends (default)"),
            poll: float = typer.Option(1.0, "--poll", help="seconds between progress polls")) -> None:
    """Admin: prepare a runtime's environment on the server and follow its progress."""
    c = client()
    st = c.runtimes.install(name)
    if not follow:
        say(f"{name}: {_status(st)}; follow with `modelyard runtimes show {name}`")
        return
    st = _follow(c, name, st, poll)
    if st["ready"]:
        size = human_size(st["size_bytes"]) if st.get("size_bytes") else "built in"
        say(f"[green]{name} is ready[/] ({size})")
        return
    if st.get("log_tail"):  # what went wrong, before the one line that says so
        console.print(st["log_tail"][-2000:], markup=False, highlight=False)
    err(f"error: runtime_{st['status']}: preparing {name} ended {st['status']}: {st.get('error') or 'see the log above'}")
    raise typer.Exit(1)
