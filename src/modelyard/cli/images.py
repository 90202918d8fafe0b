"""`modelyard images`: container images (seed §2)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from modelyard.cli._common import client as _client
from modelyard.cli._common import human_size


def _size(n: int | None) -> str:
    return human_size(n or 0)

app = typer.Typer(help="Container images: register, import docker-save / OCI archives, list, delete.",
                  no_args_is_help=True)
console = Console()


def upload_with_progress(c, local: Path, remote: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console) as bar:
        task = bar.add_task(f"upload {local.name}", total=local.stat().st_size)
        c.files.upload(local, remote, progress=lambda sent, total: bar.update(task, completed=sent, total=total))


@app.command("create")
def create(name: str = typer.Argument(..., help="repository name, e.g. team/pytorch-cuda"),
           description: str = "", label: list[str] = typer.Option(None, help="a label (repeatable)"),
           public: bool = typer.Option(False, help="visible to every user")) -> None:
    """Register an image (seed §2.1)."""
    img = _client().images.create(name, description=description, labels=label or [], is_public=public)
    console.print(f"created image [bold]{img['name']}[/] ({img['id']})")


@app.command("import")
def import_(image: str = typer.Argument(..., help="image name or id (created when it does not exist)"),
            path: str = typer.Argument(..., help="docker-save or OCI archive (.tar[.gz]) in your files"),
            tag: str = typer.Option(None, help="default: the archive's tag, else 'latest'"),
            upload: Path = typer.Option(None, help="upload this local archive to PATH first (resumable)",
                                        exists=True, dir_okay=False)) -> None:
    """Import a version from an archive in your files (seed §2.2)."""
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
def ls(q: str = typer.Option(None, help="name contains"), page: int = 1, page_size: int = 50) -> None:
    """Your images and public ones."""
    res = _client().images.list(page=page, page_size=page_size, q=q)
    t = Table("id", "name", "tags", "public", "created")
    for i in res["items"]:
        t.add_row(i["id"], i["name"], ", ".join(i["tags"]), "yes" if i["is_public"] else "", i["created_at"][:19])
    console.print(t)
    console.print(f"{len(res['items'])} of {res['total']}")


@app.command("show")
def show(image: str, tag: str = typer.Option(None, help="show one version in full")) -> None:
    """An image and its versions (tags)."""
    c = _client()
    if tag:
        v = c.images.version(image, tag)
        console.print_json(data=v)
        return
    img = c.images.get(image)
    console.print(f"[bold]{img['name']}[/] ({img['id']}){' public' if img['is_public'] else ''}")
    if img["description"]:
        console.print(img["description"])
    t = Table("tag", "digest", "platform", "layers", "size", "created")
    for v in img["versions"]:
        t.add_row(v["tag"], v["manifest_digest"][7:19], f"{v['os']}/{v['architecture']}",
                  str(len(v["layers"])), _size(v["size_bytes"]), v["created_at"][:16])
    console.print(t)
    for v in img["versions"]:
        run = " ".join((v["entrypoint"] or []) + (v["cmd"] or []))
        console.print(f"[dim]{v['tag']}:[/] {v['archive_format']} {v['manifest_digest']}  run: {run or '-'}")


@app.command("rm")
def rm(image: str, tag: str = typer.Option(None, help="delete only this version"),
       yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")) -> None:
    """Delete an image (or one version). Refused while a job uses it."""
    what = f"{image}:{tag}" if tag else image
    if not yes:
        typer.confirm(f"delete {what}?", abort=True)
    c = _client()
    if tag:
        c.images.delete_version(image, tag)
    else:
        c.images.delete(image)
    console.print(f"deleted {what}")
