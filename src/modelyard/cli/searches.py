"""`modelyard search create|ls|show|cancel|algorithms`: hyperparameter searches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(help="Hyperparameter searches (random, grid, tpe, bayes_opt, anneal); each trial is a job.",
                  no_args_is_help=True)
console = Console()
STYLE = {"running": "blue", "succeeded": "green", "complete": "green", "failed": "red", "cancelled": "magenta",
         "pruned": "yellow"}


def client():
    from modelyard.sdk import Client

    return Client()


def _parse_param(spec: str) -> dict[str, Any]:
    """name=float:1e-5..1e-3[:log]  |  name=int:4..32[:step]  |  name=a,b,c (categorical)."""
    if "=" not in spec:
        raise typer.BadParameter(f"{spec!r}: expected name=float:LOW..HIGH[:log], name=int:LOW..HIGH or name=a,b,c")
    name, rhs = spec.split("=", 1)
    kind, _, rest = rhs.partition(":")
    if kind in ("float", "int") and ".." in rest:
        rng, _, opt = rest.partition(":")
        lo, hi = rng.split("..", 1)
        out: dict[str, Any] = {"name": name.strip(), "type": kind, "low": float(lo), "high": float(hi)}
        if opt == "log":
            out["log"] = True
        elif opt:
            out["step"] = float(opt)
        return out
    choices: list[Any] = []
    for c in rhs.split(","):
        c = c.strip()
        try:
            choices.append(json.loads(c))
        except ValueError:
            choices.append(c)
    return {"name": name.strip(), "type": "categorical", "choices": choices}


@app.command("create")
def create(
    file: Path | None = typer.Option(None, "--file", "-f", help="a JSON body (POST /api/v1/searches); flags override"),
    model: str | None = typer.Option(None, help="base job: model (name, id or name:version)"),
    dataset: str | None = typer.Option(None, help="base job: dataset (else Data/ in your files)"),
    strategy: str = typer.Option("LoRA", help="LoRA | FineTune"),
    param: list[str] = typer.Option([], "--param", "-p", help="name=float:1e-5..1e-3:log | name=int:4..32 | name=a,b"),
    hp: list[str] = typer.Option([], "--hp", help="fixed hyperparameter name=value for every trial"),
    algorithm: str = typer.Option("tpe", help="random | grid | tpe | bayes_opt | anneal"),
    metric: str | None = typer.Option(None, help="objective (default eval_loss, or loss without a validate split)"),
    direction: str = typer.Option("minimize"),
    max_trials: int | None = typer.Option(None),
    parallel: int = typer.Option(1, help="parallel trials (bounded by your quota)"),
    no_early_stopping: bool = typer.Option(False, help="do not prune bad trials"),
    cpu: float | None = typer.Option(None, help="CPUs per trial"),
    memory_mib: int | None = typer.Option(None, help="memory per trial"),
    name: str | None = typer.Option(None),
    follow: bool = typer.Option(False, "--follow", help="show progress until the search ends"),
) -> None:
    """Start a search."""
    body: dict[str, Any] = json.loads(file.read_text()) if file else {}
    base = dict(body.get("base") or {})
    if model:
        base.update(model=model)
    if dataset:
        base.update(dataset=dataset, input_type="dataset")
    base.setdefault("kind", "finetune")
    base.setdefault("strategy", strategy)
    if base.get("kind") == "finetune" and not base.get("dataset"):
        base.setdefault("input_type", "local")
    if hp:
        common = dict(base.get("common_hyperparameters") or {})
        for item in hp:
            k, _, v = item.partition("=")
            common[k.strip()] = v
        base["common_hyperparameters"] = common
    if cpu is not None or memory_mib is not None:
        role: dict[str, Any] = {"role": "master", "replicas": 1}
        if cpu is not None:
            role["cpu"] = cpu
        if memory_mib is not None:
            role["memory_mib"] = memory_mib
        base["roles"] = [role]
    body["base"] = base
    if param:
        body["space"] = [_parse_param(p) for p in param]
    if not body.get("space"):
        raise typer.BadParameter("give the space with --param (or in --file)")
    body.setdefault("algorithm", algorithm)
    body.setdefault("direction", direction)
    body.setdefault("parallel_trials", parallel)
    for k, v in (("metric", metric), ("max_trials", max_trials), ("name", name)):
        if v is not None:
            body[k] = v
    if no_early_stopping:
        body["early_stopping"] = False
    s = client().post("searches", json=body)
    console.print(f"search [bold]{s['name']}[/] ({s['id']}): {s['algorithm']} via {s['sampler']}, "
                  f"{s['max_trials']} trials, objective {s['objective']['direction']} {s['objective']['metric']}")
    if follow:
        _follow(s["id"])


@app.command("ls")
def ls(state: str | None = typer.Option(None), page: int = 1, page_size: int = 20) -> None:
    """List searches."""
    res = client().searches.list(state=state, page=page, page_size=page_size)
    t = Table("id", "name", "state", "algorithm", "objective", "trials", "best", "created")
    for s in res["items"]:
        counts = s.get("trials") or {}
        done = sum(counts.values())
        best = "" if s["best_value"] is None else f"{s['best_value']:.5g}"
        t.add_row(s["id"], s["name"], Text(s["state"], style=STYLE.get(s["state"], "")), s["algorithm"],
                  f"{s['objective']['direction'][:3]} {s['objective']['metric']}", f"{done}/{s['max_trials']}",
                  best, str(s["created_at"])[:19])
    console.print(t)
    console.print(f"{res['total']} search(es)")


def _table(s: dict) -> Table:
    names = [p["name"] for p in s["space"]]
    t = Table("#", "state", *names, s["objective"]["metric"], "last step", "job", "model version",
              title=f"{s['name']} ({s['id']}) {s['state']} - {s['algorithm']}, "
                    f"{s['objective']['direction']} {s['objective']['metric']}")
    for tr in s["trials_detail"]:
        val = tr["value"] if tr["value"] is not None else tr["last_intermediate"]
        vals = [f"{tr['params'].get(n):.4g}" if isinstance(tr["params"].get(n), float) else str(tr["params"].get(n))
                for n in names]
        mark = " *" if tr["is_best"] else ""
        t.add_row(f"{tr['number']}{mark}", Text(tr["state"], style=STYLE.get(tr["state"], "")), *vals,
                  "" if val is None else f"{val:.5g}", str(tr["last_step"] or ""), tr["job_id"] or "",
                  tr["model_version_id"] or "")
    return t


@app.command("show")
def show(search_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A search with its trials and best trial."""
    s = client().searches.get(search_id)
    if as_json:
        console.print_json(json.dumps(s, default=str))
        return
    console.print(_table(s))
    if s.get("best"):
        b = s["best"]
        console.print(f"best: trial {b['number']} value {b['value']:.6g} params {b['params']} "
                      f"-> model version {b['model_version_id']}")
    if s.get("note"):
        console.print(f"[dim]{s['note']}[/]")
    if s.get("error"):
        console.print(f"[red]{s['error']}[/]")


def _follow(search_id: str) -> None:
    from rich.live import Live

    c = client()
    with Live(console=console, refresh_per_second=2) as live:
        while True:
            s = c.searches.get(search_id)
            live.update(_table(s))
            if s["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(2)
    show(search_id)


@app.command("cancel")
def cancel(search_id: str) -> None:
    """Cancel a search and its unfinished trials."""
    s = client().searches.cancel(search_id)
    console.print(f"search {s['id']} {s['state']}")


@app.command("algorithms")
def algorithms() -> None:
    """The algorithms and their parameters."""
    res = client().searches.algorithms()
    t = Table("name", "params", "description")
    for a in res["search_algo_list"]:
        t.add_row(a["name"], ", ".join(f"{p['key']}={p['value']}" for p in a["params"]), a["description"])
    console.print(t)
