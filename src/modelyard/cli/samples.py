"""`modelyard samples ls|get`: the sample data shipped with the package (no server needed)."""

from __future__ import annotations

from pathlib import Path

import typer

from modelyard.cli._common import json_option, print_json, print_table, say

app = typer.Typer(help="Sample datasets shipped with Modelyard.", no_args_is_help=True)


@app.command("ls")
def ls(as_json: bool = json_option()) -> None:
    """The samples and what they hold."""
    from modelyard.samples import SAMPLES, sample_bytes

    rows = [{"name": n, "file": f"{n}.jsonl", "size": len(sample_bytes(n)),
             "rows": sample_bytes(n).count(b"\n"), "description": d} for n, d in SAMPLES.items()]
    if as_json:
        print_json(rows)
        return
    print_table(["name", "file", "rows", "description"], [[r["name"], r["file"], r["rows"], r["description"]]
                                                          for r in rows])


@app.command("get")
def get(name: str = typer.Argument(..., help="a sample (`modelyard samples ls`)"),
        path: Path = typer.Argument(None, help="where to write it (default: ./NAME.jsonl; a folder: inside it)"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing file")) -> None:
    """Write a sample to a local file."""
    from modelyard.samples import SAMPLES, sample_bytes

    if name not in SAMPLES:
        raise typer.BadParameter(f"no sample {name!r}; there are: {', '.join(SAMPLES)}", param_hint="NAME")
    target = path or Path(f"{name}.jsonl")
    if target.is_dir():
        target = target / f"{name}.jsonl"
    if target.exists() and not overwrite:
        raise typer.BadParameter(f"{target} exists (--overwrite replaces it)", param_hint="PATH")
    data = sample_bytes(name)
    target.write_bytes(data)
    rows = data.count(b"\n")
    say(f"wrote {target} ({rows} rows)")
