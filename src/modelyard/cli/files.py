"""`modelyard files`: your private files (and the public root with --public).

Remote paths are relative to the root; '/Data/train' and 'Data/train' are the same folder.
`upload` is resumable: run the same command again after an interruption (network, Ctrl-C, server
restart) and it continues where it stopped."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

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
    yes_option,
)


def _size(n: int | None) -> str:
    return human_size(n or 0)

app = typer.Typer(help="Files: list, upload (resumable), download, mkdir, mv, rm, extract.", no_args_is_help=True)

PUBLIC = typer.Option(False, "--public", help="work in the public root")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=False,
                    disable=not console.is_terminal)  # a pipe gets the result lines only


@app.command("ls")
def ls(path: str = typer.Argument("", help="directory (default: the root)"), public: bool = PUBLIC,
       page: int = typer.Option(1, help="page (1-based)"), page_size: int = typer.Option(100, help="entries per page"),
       all_: bool = typer.Option(False, "--all", "-a", help="every entry (all pages)"),
       as_json: bool = json_option(), output: str = output_option()) -> None:
    """List a directory."""
    wide = is_wide(output)
    files = _client().files
    if all_:
        items = list(files.iter(path, public=public))
        total = len(items)
    else:
        res = files.list(path, public=public, page=page, page_size=page_size)
        items, total = res["items"], res["total"]
    if as_json:
        print_json(items)
        return
    print_table(["name", "size", "modified", "sha256"],
                [[e["name"] + ("/" if e["is_dir"] else ""), "" if e["is_dir"] else (e["size"] if wide else _size(e["size"])),
                  str(e["mtime"])[:19], (e["sha256"] or "") if wide else (e["sha256"] or "")[:12]] for e in items])
    if not all_ and total > len(items):
        from modelyard.cli._common import err

        err(f"{len(items)} of {total} entries (page {page}; --page / --all for more)")


@app.command("stat")
def stat(path: str, public: bool = PUBLIC, as_json: bool = json_option()) -> None:
    """Show one entry."""
    e = _client().files.stat(path, public=public)
    if as_json:
        print_json(e)
        return
    for k in ("path", "is_dir", "size", "sha256", "mtime", "owner_id", "public"):
        console.print(f"[bold]{k}[/]: {e.get(k)}")


def _remote_target(files, local: Path, remote: str | None, public: bool) -> str:
    if not remote:
        return local.name
    if remote.endswith("/"):
        return remote + local.name
    try:
        if files.stat(remote, public=public)["is_dir"]:
            return remote.rstrip("/") + "/" + local.name
    except Exception:  # noqa: BLE001 - not there yet: the remote path is the file's
        pass
    return remote


def _upload_one(files, local: Path, remote: str, *, public: bool, overwrite: bool, chunk_mib: int,
                parallel: int) -> dict:
    size = local.stat().st_size
    with _progress() as prog:
        hashing = prog.add_task(f"hashing {local.name}", total=size)
        sending = prog.add_task(f"uploading {local.name}", total=size, visible=False)

        def on_session(sess: dict, resumed: bool) -> None:
            prog.update(hashing, completed=size)
            prog.update(sending, visible=True)
            if resumed:
                console.print(f"resuming upload {sess['id']}: {_size(sess['received_bytes'])} of "
                              f"{_size(size)} already on the server")

        fentry = files.upload(local, remote, public=public, overwrite=overwrite, chunk_size=chunk_mib * 2**20,
                              parallel=parallel, on_session=on_session,
                              hash_progress=lambda d, t: prog.update(hashing, completed=d),
                              progress=lambda d, t: prog.update(sending, completed=d))
    return fentry


@app.command("upload")
def upload(local: Path = typer.Argument(..., exists=True, help="local file or directory"),
           remote: str = typer.Argument(None, help="remote path (a folder, or the file's new path); default: root"),
           public: bool = PUBLIC, overwrite: bool = typer.Option(False, help="replace an existing file"),
           chunk_mib: int = typer.Option(32, "--chunk-mib", help="chunk size in MiB (<= the server's limit)"),
           parallel: int = typer.Option(1, help="chunks sent at once (1 lets the server hash as data arrives)")) -> None:
    """Upload a file (or a directory, file by file) with the resumable protocol."""
    from modelyard.sdk.files import UploadInterrupted

    files = _client().files
    try:
        if local.is_dir():
            base = (remote or local.name).rstrip("/")
            for cur, _dirs, names in os.walk(local):
                for n in sorted(names):
                    p = Path(cur) / n
                    rel = p.relative_to(local).as_posix()
                    e = _upload_one(files, p, f"{base}/{rel}", public=public, overwrite=overwrite,
                                    chunk_mib=chunk_mib, parallel=parallel)
                    console.print(f"stored [bold]{e['path']}[/] ({_size(e['size'])})")
            return
        e = _upload_one(files, local, _remote_target(files, local, remote, public), public=public,
                        overwrite=overwrite, chunk_mib=chunk_mib, parallel=parallel)
    except UploadInterrupted as exc:
        console.print(f"[yellow]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"stored [bold]{e['path']}[/] ({_size(e['size'])}, sha256 {e['sha256']})")


@app.command("download")
def download(remote: str, local: Path = typer.Argument(Path("."), help="local file or directory"),
             public: bool = PUBLIC) -> None:
    """Download a file (an interrupted download resumes from <local>.part)."""
    files = _client().files
    info = files.stat(remote, public=public)
    with _progress() as prog:
        task = prog.add_task(f"downloading {info['name']}", total=info["size"])
        out = files.download(remote, local, public=public, progress=lambda d, t: prog.update(task, completed=d))
    console.print(f"saved [bold]{out}[/] ({_size(info['size'])})")


@app.command("mkdir")
def mkdir(path: str, public: bool = PUBLIC) -> None:
    """Create a directory (and its parents)."""
    e = _client().files.mkdir(path, public=public)
    console.print(f"created [bold]{e['path']}/[/]")


@app.command("mv")
def mv(src: str, dst: str, public: bool = PUBLIC,
       overwrite: bool = typer.Option(False, help="replace an existing file at dst")) -> None:
    """Move or rename a file or directory."""
    e = _client().files.move(src, dst, public=public, overwrite=overwrite)
    console.print(f"moved to [bold]{e['path']}[/]")


@app.command("rm")
def rm(path: str, public: bool = PUBLIC,
       recursive: bool = typer.Option(False, "-r", "--recursive", help="delete a directory and everything in it"),
       yes: bool = yes_option()) -> None:
    """Delete a file (or, with -r, a directory tree)."""
    files = _client().files
    if not recursive and files.stat(path, public=public)["is_dir"]:
        from modelyard.cli._common import err

        err(f"error: {path} is a directory (use -r to delete it and everything in it)")
        raise typer.Exit(1)
    confirm(f"delete {path}{' and everything in it' if recursive else ''}?", yes)
    res = files.delete(path, public=public, recursive=recursive)
    console.print(f"deleted [bold]{res['path']}[/] ({res['files']} files, {_size(res['bytes'])})")


@app.command("extract")
def extract(archive: str, dest: str = typer.Argument(None, help="folder (default: next to the archive)"),
            public: bool = PUBLIC, overwrite: bool = typer.Option(False, help="replace existing files")) -> None:
    """Extract a tar / tar.gz / zip in your files into a folder."""
    with console.status(f"extracting {archive} ..."):
        res = _client().files.extract(archive, dest, public=public, overwrite=overwrite)
    console.print(f"extracted {res['files']} files ({_size(res['bytes'])}) into [bold]{res['dest']}/[/]")


@app.command("usage")
def usage(as_json: bool = json_option()) -> None:
    """Storage used against your quota."""
    u = _client().files.usage()
    if as_json:
        print_json(u)
        return
    qb = _size(u["quota_bytes"]) if u["quota_bytes"] is not None else "unlimited"
    qf = u["quota_files"] if u["quota_files"] is not None else "unlimited"
    console.print(f"{_size(u['bytes'])} in {u['files']} files (quota {qb}, {qf} files); "
                  f"open uploads reserve {_size(u['reserved_bytes'])}")


@app.command("uploads")
def uploads(as_json: bool = json_option()) -> None:
    """Open (resumable) uploads."""
    items = _client().files.uploads()
    if as_json:
        print_json(items)
        return
    print_table(["id", "path", "received", "size", "expires"],
                [[u["id"], ("public:" if u["public"] else "") + u["path"], _size(u["received_bytes"]),
                  _size(u["size"]), str(u["expires_at"])[:19]] for u in items])


@app.command("abort")
def abort(upload_id: str) -> None:
    """Abort an open upload (its partial data is removed)."""
    _client().files.abort(upload_id)
    console.print(f"aborted {upload_id}")
