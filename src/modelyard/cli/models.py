"""`modelyard models`: the model registry."""

from __future__ import annotations

import typer

from modelyard.cli._common import client as _client
from modelyard.cli._common import (
    confirm,
    console,
    human_size,
    is_wide,
    json_option,
    output_option,
    print_json,
    print_table,
    say,
    split_version,
    yes_option,
)


def _size(n: int | None) -> str:
    return human_size(n) if n else "-"

app = typer.Typer(help="Model registry: import, versions, aliases, metrics.", no_args_is_help=True)
REF = "name, id or id prefix; NAME:VERSION or NAME:ALIAS for one version"


_STATUS = {"done": "[green]done[/]", "importing": "[yellow]importing[/]", "failed": "[red]failed[/]"}


@app.command("ls")
def ls(q: str = typer.Option(None, help="name contains"), mine: bool = typer.Option(False, help="only yours"),
       page: int = 1, page_size: int = 50, as_json: bool = json_option(), output: str = output_option()) -> None:
    """Your models and public ones."""
    wide = is_wide(output)
    res = _client().models.list(page=page, page_size=page_size, q=q, mine=mine)
    if as_json:
        print_json(res["items"])
        return
    rows = []
    for m in res["items"]:
        row = [m["id"], m["name"], m.get("owner_name") or m["owner_id"], "yes" if m["is_public"] else "",
               m["versions_count"], f"{m['latest_version'] or '-'} {_STATUS.get(m['latest_status'] or '', '')}",
               _size(m["size_bytes"])]
        if wide:
            row += [m.get("type", ""), m.get("description", ""), str(m.get("created_at", ""))[:19]]
        rows.append(row)
    cols = ["id", "name", "owner", "public", "versions", "latest", "size"]
    print_table(cols + (["type", "description", "created"] if wide else []), rows,
                caption=f"{len(res['items'])} of {res['total']}")


def _print_version(v: dict, name: str) -> None:
    say(f"[bold]{name}:{v['version']}[/] ({v['id']}) {v['status']}")
    for k in ("format", "architecture", "scale", "dtype", "context_length", "size_bytes", "path", "job_id",
              "base_version_id", "dataset_version_id", "hyperparameters", "aliases", "status_reason",
              "description"):
        if v.get(k) not in (None, "", []):
            say(f"  {k}: {v[k]}")
    for f in v.get("files") or []:
        say(f"  file {f['path']} {human_size(f['size'])} sha256 {f['sha256']}")


@app.command("show")
def show(model: str = typer.Argument(..., help=REF), as_json: bool = json_option()) -> None:
    """A model with its versions and aliases, or one version in full (NAME:VERSION)."""
    c = _client()
    name, version = split_version(model)
    if version is not None:
        v = c.models.version(name, version)
        if as_json:
            print_json(v)
            return
        _print_version(v, name)
        return
    m = c.models.get(name)
    if as_json:
        print_json(m)
        return
    say(f"[bold]{m['name']}[/] ({m['id']}) owner {m.get('owner_name')} type {m['type']}"
        f"{' public' if m['is_public'] else ''}")
    if m["description"]:
        say(m["description"])
    print_table(["version", "id", "status", "format", "architecture", "scale", "dtype", "ctx", "size", "aliases"],
                [[v["version"], v["id"], _STATUS.get(v["status"], v["status"]), v["format"], v["architecture"],
                  v["scale"], v["dtype"], v["context_length"] or "-", _size(v["size_bytes"]), ",".join(v["aliases"])]
                 for v in m["versions"]])


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
def versions(model: str = typer.Argument(..., help="name, id or id prefix"), as_json: bool = json_option()) -> None:
    """A model's versions with their lineage (job, base version)."""
    vs = _client().models.versions(model)
    if as_json:
        print_json(vs)
        return
    print_table(["version", "id", "status", "format", "params", "job", "base", "created"],
                [[v["version"], v["id"], _STATUS.get(v["status"], v["status"]), v["format"], v["scale"],
                  v["job_id"] or "", v["base_version_id"] or "", v["created_at"]] for v in vs])


@app.command("resolve")
def resolve(ref: str = typer.Argument(..., help="NAME, NAME:VERSION, NAME:ALIAS or a version id"),
            as_json: bool = json_option()) -> None:
    """Which version a reference names: id, version, format and path (one line, never wrapped)."""
    v = _client().models.resolve(ref)
    if as_json:
        print_json(v)
        return
    say(f"{v['id']} {v['version']} {v['format']} {v['path']}")


@app.command("alias")
def alias(version: str = typer.Argument(..., help="NAME:VERSION the alias points at"),
          alias: str = typer.Argument(..., help="e.g. production")) -> None:
    """Point ALIAS at a version: `modelyard models alias smollm2:3 production`."""
    name, ver = split_version(version)
    if ver is None:
        raise typer.BadParameter("give the version as NAME:VERSION", param_hint="VERSION")
    a = _client().models.set_alias(name, alias, ver)
    say(f"{name}:{a['alias']} -> {a['version']}")


@app.command("unalias")
def unalias(ref: str = typer.Argument(..., help="NAME:ALIAS")) -> None:
    """Remove an alias."""
    name, al = split_version(ref)
    if al is None:
        raise typer.BadParameter("give it as NAME:ALIAS", param_hint="REF")
    _client().models.delete_alias(name, al)
    say(f"removed alias {name}:{al}")


@app.command("metrics")
def metrics(version: str = typer.Argument(..., help="NAME:VERSION"),
            add: list[str] = typer.Option(None, "--add", help="name=value (repeatable)"),
            step: int = typer.Option(None, help="the step the added values belong to"),
            as_json: bool = json_option()) -> None:
    """List a version's metrics, or append some with --add bleu=31.2."""
    name, ver = split_version(version)
    if ver is None:
        raise typer.BadParameter("give the version as NAME:VERSION", param_hint="VERSION")
    c = _client()
    if add:
        values = {}
        for item in add:
            k, _, val = item.partition("=")
            values[k.strip()] = float(val)
        c.models.add_metrics(name, ver, values, step=step)
    rows = c.models.metrics(name, ver)
    if as_json:
        print_json(rows)
        return
    print_table(["name", "value", "step", "at"],
                [[r["name"], f"{r['value']:g}", "" if r["step"] is None else r["step"], r["created_at"]]
                 for r in rows])


@app.command("rm")
def rm(model: str = typer.Argument(..., help=REF), yes: bool = yes_option()) -> None:
    """Delete a version (NAME:VERSION) or the whole model. Refused while a job, a service or another
    version's lineage needs it."""
    name, version = split_version(model)
    what = f"model version {name}:{version}" if version else f"model {name} and all its versions"
    confirm(f"delete {what}?", yes)
    c = _client()
    if version:
        c.models.delete_version(name, version)
    else:
        c.models.delete(name)
    say(f"deleted {what}")
