"""`modelyard images`: container images."""

from __future__ import annotations

from pathlib import Path

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
    return human_size(n or 0)

app = typer.Typer(help="Container images: register, import docker-save / OCI archives, list, delete.",
                  no_args_is_help=True)
REF = "name, id or id prefix; NAME:TAG for one version"


def upload_with_progress(c, local: Path, remote: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"upload {local.name}", total=local.stat().st_size)
        c.files.upload(local, remote, progress=lambda sent, total: bar.update(task, completed=sent, total=total))


@app.command("create")
def create(name: str = typer.Argument(..., help="repository name, e.g. team/pytorch-cuda"),
           description: str = "", label: list[str] = typer.Option(None, help="a label (repeatable)"),
           public: bool = typer.Option(False, help="visible to every user")) -> None:
    """Register an image."""
    img = _client().images.create(name, description=description, labels=label or [], is_public=public)
    console.print(f"created image [bold]{img['name']}[/] ({img['id']})")


@app.command("import")
def import_(image: str = typer.Argument(..., help="image name or id (created when it does not exist)"),
            path: str = typer.Argument(..., help="docker-save or OCI archive (.tar[.gz]) in your files"),
            tag: str = typer.Option(None, help="default: the archive's tag, else 'latest'"),
            upload: Path = typer.Option(None, help="upload this local archive to PATH first (resumable)",
                                        exists=True, dir_okay=False)) -> None:
    """Import a version from a docker-save or OCI archive in your files."""
    from modelyard.sdk import APIError

    c = _client()
    if upload is not None:
        upload_with_progress(c, upload, path)
    try:
        c.images.get(image)
    except APIError as exc:
        if exc.status != 404 or len(image) == 32:
            raise
        c.images.create(image)
        console.print(f"created image [bold]{image}[/]")
    with console.status(f"importing {path} ..."):
        v = c.images.import_version(image, path, tag=tag)
    console.print(f"imported [bold]{image}:{v['tag']}[/] {v['manifest_digest']} ({v['os']}/{v['architecture']}, "
                  f"{len(v['layers'])} layers, {_size(v['size_bytes'])})")


@app.command("ls")
def ls(q: str = typer.Option(None, help="name contains"), page: int = 1, page_size: int = 50,
       as_json: bool = json_option(), output: str = output_option()) -> None:
    """Your images and public ones."""
    wide = is_wide(output)
    res = _client().images.list(page=page, page_size=page_size, q=q)
    if as_json:
        print_json(res["items"])
        return
    rows = [[i["id"], i["name"], ", ".join(i["tags"]), "yes" if i["is_public"] else "", i["created_at"][:19]]
            + ([i.get("owner_id", ""), i.get("description", "")] if wide else []) for i in res["items"]]
    print_table(["id", "name", "tags", "public", "created"] + (["owner", "description"] if wide else []), rows,
                caption=f"{len(res['items'])} of {res['total']}")


@app.command("show")
def show(image: str = typer.Argument(..., help=REF), as_json: bool = json_option()) -> None:
    """An image and its versions (tags), or one version in full (NAME:TAG)."""
    c = _client()
    name, tag = split_version(image)
    if tag is not None:
        v = c.images.version(name, tag)
        if as_json:
            print_json(v)
            return
        for k in ("tag", "id", "manifest_digest", "archive_format", "os", "architecture", "size_bytes",
                  "entrypoint", "cmd", "env", "working_dir", "user", "created_at"):
            if v.get(k) not in (None, "", []):
                say(f"{k}: {v[k]}")
        return
    img = c.images.get(name)
    if as_json:
        print_json(img)
        return
    say(f"[bold]{img['name']}[/] ({img['id']}){' public' if img['is_public'] else ''}")
    if img["description"]:
        say(img["description"])
    print_table(["tag", "digest", "platform", "layers", "size", "created", "run"],
                [[v["tag"], v["manifest_digest"], f"{v['os']}/{v['architecture']}", len(v["layers"]),
                  _size(v["size_bytes"]), v["created_at"][:16], " ".join((v["entrypoint"] or []) + (v["cmd"] or []))]
                 for v in img["versions"]])


@app.command("rm")
def rm(image: str = typer.Argument(..., help=REF), yes: bool = yes_option()) -> None:
    """Delete an image, or one version (NAME:TAG). Refused while a job or a service uses it."""
    name, tag = split_version(image)
    what = f"image version {name}:{tag}" if tag else f"image {name} and all its versions"
    confirm(f"delete {what}?", yes)
    c = _client()
    if tag:
        c.images.delete_version(name, tag)
    else:
        c.images.delete(name)
    say(f"deleted {what}")
