"""`modelyard datasets`: validated, immutable dataset versions."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from modelyard.cli._common import client as _client

app = typer.Typer(help="Datasets: create from your files (jsonl/json/csv/parquet/txt), versions, preview.",
                  no_args_is_help=True)
console = Console()


def _rows(v: dict) -> str:
    return " / ".join(f"{s} {n}" for s, n in v["rows"].items() if n)


def _print_version(v: dict, *, preview: bool = True) -> None:
    console.print(f"version [bold]{v['version']}[/] ({v['id']}): {v['shape']}"
                  f"{'/' + v['chat_format'] if v['chat_format'] else ''}, {v['format']}, {_rows(v)} rows")
    t = Table("split", "file", "rows", "size", "sha256", "from")
    for f in v.get("files", []):
        t.add_row(f["split"], f["name"], str(f["rows"]), str(f["size"]), f["sha256"][:16], f["source"])
    console.print(t)
    if preview:
        for split, rows in (v.get("preview") or {}).items():
            for row in rows[:2]:
                console.print(f"[dim]{split}:[/] {json.dumps(row, ensure_ascii=False)[:200]}")


@app.command("create")
def create(name: str,
           path: str = typer.Option(None, help="folder with train/validate/test (e.g. Data) or one file"),
           train: str = typer.Option(None, help="instead of --path: training file or folder"),
           validate: str = typer.Option(None, help="validation file or folder"),
           test: str = typer.Option(None, help="test file or folder"),
           description: str = "", public: bool = typer.Option(False, help="visible to every user"),
           upload: Path = typer.Option(None, help="upload this local file to --path first (resumable)",
                                       exists=True, dir_okay=False)) -> None:
    """Create a dataset (version 1) from your files; a new version if NAME exists already."""
    from modelyard.sdk import APIError

    c = _client()
    if upload is not None:
        if not path:
            raise typer.BadParameter("--upload needs --path (where to put the file in your files)")
        from modelyard.cli.images import upload_with_progress

        upload_with_progress(c, upload, path)
    try:
        existing = c.datasets.get(name)
    except APIError as exc:
        if exc.status != 404:
            raise
        existing = None
    if existing is not None and existing["owner_id"] != c.get("users/me")["id"]:
        existing = None  # someone else's public dataset: make your own
    if existing is not None:
        v = c.datasets.create_version(name, path, train=train, validate=validate, test=test, description=description)
        console.print(f"dataset [bold]{name}[/]: new version")
    else:
        ds = c.datasets.create(name, path, train=train, validate=validate, test=test, description=description,
                               is_public=public)
        v = ds["version"]
        console.print(f"created dataset [bold]{ds['name']}[/] ({ds['id']})")
    _print_version(v)


@app.command("ls")
def ls(q: str = typer.Option(None, help="name contains"), page: int = 1, page_size: int = 50) -> None:
    """Your datasets and public ones."""
    res = _client().datasets.list(page=page, page_size=page_size, q=q)
    t = Table("id", "name", "versions", "latest", "shape", "rows", "public")
    for d in res["items"]:
        lv = d["latest_version"] or {}
        t.add_row(d["id"], d["name"], str(d["versions_count"]), str(lv.get("version", "-")), lv.get("shape", ""),
                  _rows(lv) if lv else "", "yes" if d["is_public"] else "")
    console.print(t)
    console.print(f"{len(res['items'])} of {res['total']}")


@app.command("show")
def show(dataset: str, version: str = typer.Option(None, help="a version number (default: all, latest in full)")
         ) -> None:
    """A dataset, its versions, files and a preview."""
    c = _client()
    d = c.datasets.get(dataset)
    console.print(f"[bold]{d['name']}[/] ({d['id']}){' public' if d['is_public'] else ''}")
    if d["description"]:
        console.print(d["description"])
    if version is None:
        t = Table("version", "id", "shape", "format", "rows", "created")
        for v in d["versions"]:
            t.add_row(str(v["version"]), v["id"], v["shape"], v["format"], _rows(v), v["created_at"][:19])
        console.print(t)
        version = "latest"
    if d["versions"]:
        _print_version(c.datasets.version(dataset, version))


@app.command("rm")
def rm(dataset: str, version: str = typer.Option(None, help="delete only this version"),
       yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")) -> None:
    """Delete a dataset (or one version). Refused while a job uses it."""
    what = f"{dataset} version {version}" if version else dataset
    if not yes:
        typer.confirm(f"delete {what}?", abort=True)
    c = _client()
    if version:
        c.datasets.delete_version(dataset, version)
    else:
        c.datasets.delete(dataset)
    console.print(f"deleted {what}")
