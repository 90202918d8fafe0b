"""`modelyard models`: the model registry."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from modelyard.cli._common import client as _client
from modelyard.cli._common import human_size


def _size(n: int | None) -> str:
    return human_size(n) if n else "-"

app = typer.Typer(help="Model registry: import, versions, aliases, metrics.", no_args_is_help=True)
console = Console()


_STATUS = {"done": "[green]done[/]", "importing": "[yellow]importing[/]", "failed": "[red]failed[/]"}


@app.command("ls")
def ls(q: str = typer.Option(None, help="name contains"), mine: bool = typer.Option(False, help="only yours"),
       page: int = 1, page_size: int = 50) -> None:
    """Your models and public ones."""
    res = _client().models.list(page=page, page_size=page_size, q=q, mine=mine)
    t = Table("id", "name", "owner", "public", "versions", "latest", "size")
    for m in res["items"]:
        t.add_row(m["id"], m["name"], m.get("owner_name") or m["owner_id"], "yes" if m["is_public"] else "",
                  str(m["versions_count"]), f"{m['latest_version'] or '-'} {_STATUS.get(m['latest_status'] or '', '')}",
                  _size(m["size_bytes"]))
    console.print(t)
    console.print(f"{len(res['items'])} of {res['total']}")


@app.command("show")
def show(model: str) -> None:
    """A model with its versions and aliases."""
    m = _client().models.get(model)
    console.print(f"[bold]{m['name']}[/] ({m['id']}) owner {m.get('owner_name')} type {m['type']}"
                  f"{' public' if m['is_public'] else ''}")
    if m["description"]:
        console.print(m["description"])
    t = Table("version", "id", "status", "format", "architecture", "scale", "dtype", "ctx", "size", "aliases")
    for v in m["versions"]:
        t.add_row(v["version"], v["id"], _STATUS.get(v["status"], v["status"]), v["format"], v["architecture"],
                  v["scale"], v["dtype"], str(v["context_length"] or "-"), _size(v["size_bytes"]), ",".join(v["aliases"]))
    console.print(t)


@app.command("import")
def import_(name: str, path: str = typer.Argument(..., help="folder or .gguf file, relative to your file root"),
            version: str = typer.Option(None, help="version name (default: next integer)"),
            public: bool = typer.Option(False, help="visible to every user"),
            description: str = "", wait: bool = typer.Option(True, help="wait for the import to finish")) -> None:
    """Import a model version from your files (creates the model when it does not exist)."""
    from modelyard.sdk import APIError

    c = _client()
    try:
        c.models.get(name)
        v = c.models.import_version(name, path, version=version, description=description)
    except APIError as exc:
        if exc.status != 404:
            raise
        m = c.models.create(name, path, version=version, description=description, is_public=public)
        v = m["versions"][-1]
    console.print(f"importing {name}:{v['version']} ({v['id']})")
    if wait:
        with console.status("copying and inspecting ..."):
            v = c.models.wait(name, v["id"])
        if v["status"] == "done":
            console.print(f"[green]done[/]: {v['format']} {v['architecture']} {v['scale']} {v['dtype']} "
                          f"ctx {v['context_length']} {_size(v['size_bytes'])}")
        else:
            console.print(f"[red]{v['status']}[/]: {v['status_reason']}")
            raise typer.Exit(1)


@app.command("versions")
def versions(model: str) -> None:
    t = Table("version", "id", "status", "format", "params", "job", "base", "created")
    for v in _client().models.versions(model):
        t.add_row(v["version"], v["id"], _STATUS.get(v["status"], v["status"]), v["format"], v["scale"],
                  v["job_id"] or "", v["base_version_id"] or "", v["created_at"])
    console.print(t)


@app.command("version")
def version(model: str, version: str) -> None:
    """One version in full (files with SHA-256, inspection details, lineage)."""
    console.print_json(json.dumps(_client().models.version(model, version)))


@app.command("resolve")
def resolve(ref: str) -> None:
    """'<model>', '<model>:<version|alias>' or a version id -> the version."""
    v = _client().models.resolve(ref)
    console.print(f"{v['id']} {v['version']} {v['format']} {v['path']}")


@app.command("alias")
def alias(model: str, alias: str, version: str) -> None:
    """Point ALIAS (e.g. production) at VERSION."""
    a = _client().models.set_alias(model, alias, version)
    console.print(f"{model}:{a['alias']} -> {a['version']}")


@app.command("unalias")
def unalias(model: str, alias: str) -> None:
    _client().models.delete_alias(model, alias)
    console.print(f"removed alias {alias}")


@app.command("metrics")
def metrics(model: str, version: str, add: list[str] = typer.Option(None, "--add", help="name=value"),
            step: int = typer.Option(None)) -> None:
    """List a version's metrics, or append some with --add bleu=31.2."""
    c = _client()
    if add:
        values = {}
        for item in add:
            k, _, val = item.partition("=")
            values[k.strip()] = float(val)
        c.models.add_metrics(model, version, values, step=step)
    t = Table("name", "value", "step", "at")
    for r in c.models.metrics(model, version):
        t.add_row(r["name"], f"{r['value']:g}", "" if r["step"] is None else str(r["step"]), r["created_at"])
    console.print(t)


@app.command("rm")
def rm(model: str, version: str = typer.Argument(None, help="only this version")) -> None:
    """Delete a version, or the whole model (refused while in use)."""
    c = _client()
    if version:
        c.models.delete_version(model, version)
        console.print(f"deleted {model}:{version}")
    else:
        c.models.delete(model)
        console.print(f"deleted model {model}")
