"""`modelyard datasets`: validated, immutable dataset versions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from modelyard.cli._common import client as _client
from modelyard.cli._common import (
    confirm,
    is_wide,
    json_option,
    output_option,
    print_json,
    print_table,
    say,
    split_version,
    yes_option,
)

app = typer.Typer(help="Datasets: create from your files (jsonl/json/csv/parquet/txt), versions, preview.",
                  no_args_is_help=True)
REF = "name, id or id prefix; NAME:VERSION for one version"


def _rows(v: dict) -> str:
    return " / ".join(f"{s} {n}" for s, n in v["rows"].items() if n)


def _print_version(v: dict, *, preview: bool = True) -> None:
    say(f"version [bold]{v['version']}[/] ({v['id']}): {v['shape']}"
        f"{'/' + v['chat_format'] if v['chat_format'] else ''}, {v['format']}, {_rows(v)} rows")
    print_table(["split", "file", "rows", "size", "sha256", "from"],
                [[f["split"], f["name"], f["rows"], f["size"], f["sha256"][:16], f["source"]]
                 for f in v.get("files", [])])
    if preview:
        for split, rows in (v.get("preview") or {}).items():
            for row in rows[:2]:
                say(f"[dim]{split}:[/] " + json.dumps(row, ensure_ascii=False)[:200].replace("[", "\\["))


@app.command("create")
def create(name: str,
           path: str = typer.Option(None, help="folder with train/validate/test (e.g. Data) or one file"),
           train: str = typer.Option(None, help="instead of --path: training file or folder"),
           validate: str = typer.Option(None, help="validation file or folder"),
           test: str = typer.Option(None, help="test file or folder"),
           description: str = "", public: bool = typer.Option(False, help="visible to every user"),
           upload: Path = typer.Option(None, help="upload this local file to --path first (resumable)",
                                       exists=True, dir_okay=False),
           as_json: bool = json_option()) -> None:
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
        if not as_json:
            say(f"dataset [bold]{name}[/]: new version")
    else:
        ds = c.datasets.create(name, path, train=train, validate=validate, test=test, description=description,
                               is_public=public)
        v = ds["version"]
        if not as_json:
            say(f"created dataset [bold]{ds['name']}[/] ({ds['id']})")
    if as_json:
        print_json(v)
        return
    _print_version(v)


@app.command("ls")
def ls(q: str = typer.Option(None, help="name contains"), page: int = 1, page_size: int = 50,
       as_json: bool = json_option(), output: str = output_option()) -> None:
    """Your datasets and public ones."""
    wide = is_wide(output)
    res = _client().datasets.list(page=page, page_size=page_size, q=q)
    if as_json:
        print_json(res["items"])
        return
    rows = []
    for d in res["items"]:
        lv = d["latest_version"] or {}
        row = [d["id"], d["name"], d["versions_count"], lv.get("version", "-"), lv.get("shape", ""),
               _rows(lv) if lv else "", "yes" if d["is_public"] else ""]
        if wide:
            row += [d.get("owner_id", ""), lv.get("format", ""), lv.get("id", ""), d.get("description", "")]
        rows.append(row)
    cols = ["id", "name", "versions", "latest", "shape", "rows", "public"]
    print_table(cols + (["owner", "format", "latest version id", "description"] if wide else []), rows,
                caption=f"{len(res['items'])} of {res['total']}")


@app.command("show")
def show(dataset: str = typer.Argument(..., help=REF), as_json: bool = json_option()) -> None:
    """A dataset with its versions (the latest in full), or one version: NAME:VERSION."""
    c = _client()
    name, version = split_version(dataset)
    if version is not None:
        v = c.datasets.version(name, version)
        if as_json:
            print_json(v)
            return
        _print_version(v)
        return
    d = c.datasets.get(name)
    if as_json:
        print_json(d)
        return
    say(f"[bold]{d['name']}[/] ({d['id']}){' public' if d['is_public'] else ''}")
    if d["description"]:
        say(d["description"])
    print_table(["version", "id", "shape", "format", "rows", "created"],
                [[v["version"], v["id"], v["shape"], v["format"], _rows(v), v["created_at"][:19]]
                 for v in d["versions"]])
    if d["versions"]:
        _print_version(c.datasets.version(name, "latest"))


@app.command("rm")
def rm(dataset: str = typer.Argument(..., help=REF), yes: bool = yes_option()) -> None:
    """Delete a dataset, or one version (NAME:VERSION). Refused while a job or a model's lineage needs it."""
    name, version = split_version(dataset)
    what = f"dataset {name} version {version}" if version else f"dataset {name} and all its versions"
    confirm(f"delete {what}?", yes)
    c = _client()
    if version:
        c.datasets.delete_version(name, version)
    else:
        c.datasets.delete(name)
    say(f"deleted {what}")
