"""`modelyard search create|ls|show|rm|cancel|algorithms`: hyperparameter searches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
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

app = typer.Typer(help="Hyperparameter searches (`modelyard search algorithms` lists the algorithms); "
                       "each trial is a job.", no_args_is_help=True)
STYLE = {"running": "blue", "succeeded": "green", "complete": "green", "failed": "red", "cancelled": "magenta",
         "pruned": "yellow"}


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
    body_file: Path | None = typer.Option(None, "--body", help="a JSON body (POST /api/v1/searches); flags override",
                                          exists=True, dir_okay=False),
    model: str | None = typer.Option(None, help="base job: model (name, name:version or id)"),
    dataset: str | None = typer.Option(None, help="base job: dataset (else Data/ in your files)"),
    strategy: str = typer.Option("lora", help="lora | full | qlora | pretrain"),
    param: list[str] = typer.Option([], "--param", "-p", help="name=float:1e-5..1e-3:log | name=int:4..32 | name=a,b"),
    hp: list[str] = typer.Option([], "--hp", metavar="NAME=VALUE", help="fixed hyperparameter name=value for every trial (repeatable)"),
    algorithm: str = typer.Option("tpe", help="one of `modelyard search algorithms`"),
    metric: str | None = typer.Option(None, help="objective (default eval_loss, or loss without a validate split)"),
    direction: str = typer.Option("minimize", help="minimize | maximize"),
    max_trials: int | None = typer.Option(None, help="trials in all"),
    parallel: int = typer.Option(1, help="parallel trials (bounded by your quota)"),
    early_stopping: bool = typer.Option(True, "--early-stopping/--no-early-stopping", help="prune bad trials"),
    cpu: float | None = typer.Option(None, help="CPUs per trial"),
    memory: str | None = typer.Option(None, "--memory", metavar="SIZE", help="memory per trial, e.g. 4GiB"),
    name: str | None = typer.Option(None, help="search name (default: generated)"),
    follow: bool = follow_option("show progress until the search ends"),
) -> None:
    """Start a search."""
    body: dict[str, Any] = json.loads(body_file.read_text()) if body_file else {}
    base = dict(body.get("base") or {})
    if model:
        base.update(model=model)
    if dataset:
        base.update(dataset=dataset, input_type="dataset")
    base.setdefault("kind", "pretrain" if strategy == "pretrain" else "finetune")
    base.setdefault("strategy", strategy.lower())
    if base.get("kind") in ("finetune", "pretrain") and not base.get("dataset"):
        base.setdefault("input_type", "local")
    if hp:
        base["common_hyperparameters"] = {**dict(base.get("common_hyperparameters") or {}), **key_values(hp)}
    if cpu is not None or memory is not None:
        role: dict[str, Any] = {"role": "master", "replicas": 1}
        if cpu is not None:
            role["cpu"] = cpu
        if memory is not None:
            role["memory_mib"] = memory_mib(memory)
        base["roles"] = [role]
    body["base"] = base
    if param:
        body["space"] = [_parse_param(p) for p in param]
    if not body.get("space"):
        raise typer.BadParameter("give the space with --param (or in --body)")
    body.setdefault("algorithm", algorithm)
    body.setdefault("direction", direction)
    body.setdefault("parallel_trials", parallel)
    for k, v in (("metric", metric), ("max_trials", max_trials), ("name", name)):
        if v is not None:
            body[k] = v
    if not early_stopping:
        body["early_stopping"] = False
    c = client()
    s = c.post("searches", json=body)
    say(f"search [bold]{s['name']}[/] ({s['id']}): {s['algorithm']} via {s['sampler']}, "
        f"{s['max_trials']} trials, objective {s['objective']['direction']} {s['objective']['metric']}")
    if follow:
        final = _follow(c, s["id"])
        if final["state"] != "succeeded":
            raise typer.Exit(1)


@app.command("ls")
def ls(state: str | None = typer.Option(None, help="running | succeeded | failed | cancelled"),
       page: int = 1, page_size: int = 20, as_json: bool = json_option(), output: str = output_option()) -> None:
    """List searches."""
    wide = is_wide(output)
    res = client().searches.list(state=state, page=page, page_size=page_size)
    if as_json:
        print_json(res["items"])
        return
    rows = []
    for s in res["items"]:
        counts = s.get("trials") or {}
        done = sum(counts.values())
        best = "" if s["best_value"] is None else f"{s['best_value']:.5g}"
        row = [s["id"], s["name"], Text(s["state"], style=STYLE.get(s["state"], "")), s["algorithm"],
               f"{s['objective']['direction'][:3]} {s['objective']['metric']}", f"{done}/{s['max_trials']}",
               best, str(s["created_at"])[:19]]
        if wide:
            row += [", ".join(f"{k} {v}" for k, v in counts.items()), s.get("error") or ""]
        rows.append(row)
    cols = ["id", "name", "state", "algorithm", "objective", "trials", "best", "created"]
    print_table(cols + (["trial states", "error"] if wide else []), rows, title=f"{res['total']} search(es)")


def _table(s: dict) -> Table:
    cols, rows = _trial_rows(s)
    t = Table(*cols, title=f"{s['name']} ({s['id']}) {s['state']} - {s['algorithm']}, "
                           f"{s['objective']['direction']} {s['objective']['metric']}")
    for r in rows:
        t.add_row(*r)
    return t


def _trial_rows(s: dict) -> tuple[list[str], list[list]]:
    names = [p["name"] for p in s["space"]]
    rows = []
    for tr in s["trials_detail"]:
        val = tr["value"] if tr["value"] is not None else tr["last_intermediate"]
        vals = [f"{tr['params'].get(n):.4g}" if isinstance(tr["params"].get(n), float) else str(tr["params"].get(n))
                for n in names]
        mark = " *" if tr["is_best"] else ""
        rows.append([f"{tr['number']}{mark}", Text(tr["state"], style=STYLE.get(tr["state"], "")), *vals,
                     "" if val is None else f"{val:.5g}", str(tr["last_step"] or ""), tr["job_id"] or "",
                     tr["model_version_id"] or ""])
    return ["#", "state", *names, s["objective"]["metric"], "last step", "job", "model version"], rows


def _summary(s: dict) -> None:
    cols, rows = _trial_rows(s)
    print_table(cols, rows, title=f"{s['name']} ({s['id']}) {s['state']} - {s['algorithm']}, "
                                  f"{s['objective']['direction']} {s['objective']['metric']}")
    if s.get("best"):
        b = s["best"]
        say(f"best: trial {b['number']} value {b['value']:.6g} params {b['params']} "
            f"-> model version {b['model_version_id']}")
    if s.get("note"):
        say(f"[dim]{s['note']}[/]")
    if s.get("error"):
        say(f"[red]{s['error']}[/]")


@app.command("show")
def show(search: str = typer.Argument(..., help="name, id or id prefix"), as_json: bool = json_option()) -> None:
    """A search with its trials and best trial."""
    s = client().searches.get(search)
    if as_json:
        print_json(s)
        return
    _summary(s)


def _follow(c, search_id: str) -> dict:
    """A live table on a terminal; a line per trial change when piped. Ctrl-C leaves it running."""
    from rich.live import Live

    from modelyard.cli._common import err

    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=2) as live:
                while True:
                    s = c.searches.get(search_id)
                    live.update(_table(s))
                    if s["state"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(2)
        else:
            seen: dict[int, str] = {}
            while True:
                s = c.searches.get(search_id)
                for tr in s["trials_detail"]:
                    if seen.get(tr["number"]) != tr["state"]:
                        seen[tr["number"]] = tr["state"]
                        val = "" if tr["value"] is None else f" {s['objective']['metric']} {tr['value']:.5g}"
                        say(f"trial {tr['number']} {tr['state']}{val}")
                if s["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(2)
    except KeyboardInterrupt:
        err(f"\nstopped following; the search keeps running. See it with `modelyard search show {search_id}`")
        raise typer.Exit(130) from None
    _summary(s)
    return s


@app.command("rm")
def rm(search: str = typer.Argument(..., help="name, id or id prefix"), yes: bool = yes_option()) -> None:
    """Delete a finished search (cancel a running one first)."""
    confirm(f"delete search {search}?", yes)
    client().searches.delete(search)
    say(f"deleted search {search}")


@app.command("cancel")
def cancel(search: str = typer.Argument(..., help="name, id or id prefix")) -> None:
    """Cancel a search and its unfinished trials."""
    s = client().searches.cancel(search)
    say(f"search {s['name']} ({s['id']}) {s['state']}")


@app.command("algorithms")
def algorithms(as_json: bool = json_option()) -> None:
    """The algorithms `--algorithm` takes, with their parameters."""
    res = client().searches.algorithms()
    if as_json:
        print_json(res["search_algo_list"])
        return
    # the listing keeps the seed's names (tpe_search); show the names --algorithm is documented with
    print_table(["name", "params", "description"],
                [[a["name"].removesuffix("_search"), ", ".join(f"{p['key']}={p['value']}" for p in a["params"]), a["description"]]
                 for a in res["search_algo_list"]])
