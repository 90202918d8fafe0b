"""What every CLI group shares: the client, ONE output helper (tables, JSON, messages), the
standard options (--json, -o wide, -y, -f) and the error handling of the whole command tree.

Output rule (README "CLI conventions"): on a terminal, rich tables; when stdout is not a TTY,
tables are plain tab-separated rows (a header line first) and nothing is truncated or wrapped, so
`modelyard models ls | cut -f2` gives whole names. `--json` prints the API's JSON objects (a list
is a JSON array) and nothing else on stdout."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click
import typer
import typer.core
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException


class _Console(Console):
    """A rich console that never wraps when its stream is not a terminal (checked at each print:
    typer's test runner and pipes swap sys.stdout after import)."""

    @property
    def soft_wrap(self) -> bool:  # type: ignore[override]
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, _value: bool) -> None:  # Console.__init__ assigns it; the property decides
        pass


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)


class State:
    debug = False
    url: str | None = None
    warned_admin = False


state = State()


# --- options every group uses the same way -------------------------------------------------

def json_option() -> Any:
    return typer.Option(False, "--json", help="print the API's JSON (a list is a JSON array)")


def output_option() -> Any:
    return typer.Option("", "--output", "-o", metavar="wide", help="'wide': more columns")


def yes_option() -> Any:
    return typer.Option(False, "--yes", "-y", help="do not ask for confirmation")


def follow_option(what: str = "show progress until it ends") -> Any:
    return typer.Option(False, "--follow", "-f", help=what)


def is_wide(output: str) -> bool:
    if output in ("", None):
        return False
    if output != "wide":
        raise typer.BadParameter(f"-o takes 'wide', not {output!r}")
    return True


def confirm(question: str, yes: bool) -> None:
    """Ask (default no) unless -y was given; 'n' aborts with exit code 1."""
    if not yes:
        typer.confirm(question, abort=True, err=True)


# --- the client ---------------------------------------------------------------------------

def make_client():
    """MODELYARD_URL / MODELYARD_TOKEN; without a token, the local admin token on the server's
    machine, said once on stderr (never silently)."""
    from modelyard.sdk import Client
    from modelyard.sdk._client import admin_token_file

    if os.environ.get("MODELYARD_TOKEN"):
        c = Client()
    else:
        c = Client.local_admin(missing_ok=True)
        if c.token and not state.warned_admin:
            state.warned_admin = True
            shown = str(admin_token_file()).replace(str(Path.home()), "~", 1)
            err(f"using the local admin token from {shown}; set MODELYARD_TOKEN to act as another user")
    return c


def client():
    c = make_client()
    state.url = c.url
    return c


# --- output -------------------------------------------------------------------------------

def err(message: str) -> None:
    """One plain line on stderr."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def say(message: str) -> None:
    """A message for people (rich markup allowed); never wrapped when piped."""
    console.print(message)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _plain(cell: Any) -> str:
    if cell is None:
        return ""
    s = cell.plain if isinstance(cell, Text) else str(cell)
    if isinstance(cell, str) and "[" in s:
        s = Text.from_markup(s).plain
    return s.replace("\t", " ").replace("\n", " ")


def print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None,
                caption: str | None = None) -> None:
    """A table: rich on a terminal; tab-separated with a header line when piped (nothing cut; the
    title and caption then go to stderr, so stdout holds only the rows)."""
    if console.is_terminal:
        t = Table(title=title, caption=caption)
        for i, col in enumerate(columns):
            if col in ("id", "name"):  # what the next command needs: whole, on one line, copyable
                t.add_column(col, no_wrap=True, min_width=max([len(_plain(r[i])) for r in rows] + [len(col)]))
            else:
                t.add_column(col)
        for r in rows:
            t.add_row(*[c if isinstance(c, Text) else ("" if c is None else str(c)) for c in r])
        console.print(t)
        return
    if title:
        err(_plain(title))
    out = sys.stdout
    out.write("\t".join(columns) + "\n")
    for r in rows:
        out.write("\t".join(_plain(c) for c in r) + "\n")
    out.flush()
    if caption:
        err(_plain(caption))


def print_rich_table(t: Table) -> None:
    """A rich Table built elsewhere, under the same rule as print_table."""
    if console.is_terminal:
        console.print(t)
        return
    cols = [list(c.cells) for c in t.columns]
    print_table([_plain(c.header) for c in t.columns], [list(r) for r in zip(*cols, strict=True)],
                title=None if t.title is None else _plain(t.title),
                caption=None if t.caption is None else _plain(t.caption))


def human_size(n: float | None) -> str:
    """Bytes in binary units: '0 B', '1.5 KiB', '516.5 MiB'; None -> '-'."""
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return str(n)


def memory_mib(value: str | None) -> int | None:
    """'16GiB', '512MiB', '2G' (core/units) -> MiB; a plain number is MiB."""
    if value is None:
        return None
    from modelyard.core.units import parse_bytes

    v = value.strip()
    if v.isdigit():
        return int(v)
    try:
        return max(1, parse_bytes(v) // (1024 * 1024))
    except ValueError as exc:
        raise typer.BadParameter(f"memory {value!r}: {exc}") from None


def key_values(items: list[str] | None, what: str = "--hp") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise typer.BadParameter(f"{what} {item!r}: expected name=value")
        out[k.strip()] = v.strip()
    return out


def split_version(ref: str) -> tuple[str, str | None]:
    """'name:version' -> ('name', 'version'); 'name' -> ('name', None)."""
    name, sep, version = ref.rpartition(":")
    if not sep:
        return ref, None
    return name, version or None


# --- errors: one line, an exit code that tells failure from success --------------------------

def _unreachable(exc: Exception) -> str:
    try:
        url = str(exc.request.url.copy_with(path="/", query=None))  # type: ignore[attr-defined]
    except (RuntimeError, AttributeError):
        url = state.url or os.environ.get("MODELYARD_URL") or "http://127.0.0.1:8600"
    return (f"error: cannot reach the Modelyard server at {url.rstrip('/')} ({type(exc).__name__}); "
            "start it with `modelyard server` or set MODELYARD_URL to where it runs")


# exits, aborts and usage errors are typer's (it vendors click) or click's own: let them through
_PASS_THROUGH = (typer.Exit, typer.Abort, TyperException, click.exceptions.Exit, click.ClickException, click.Abort,
                 KeyboardInterrupt)


class Group(typer.core.TyperGroup):
    """The root group: turns what escapes a command into one line on stderr and an exit code
    (2: server unreachable, 1: any other failure); `--debug` shows the traceback as well."""

    def invoke(self, ctx: click.Context) -> Any:
        import httpx

        from modelyard.sdk import APIError

        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except APIError as exc:
            self._trace()
            hint = " (set MODELYARD_TOKEN to your token)" if exc.status == 401 else ""
            err(f"error: {exc.code}: {exc.message}{hint}")
            raise typer.Exit(1) from None
        except httpx.TransportError as exc:
            self._trace()
            err(_unreachable(exc))
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - the CLI's last word: one line, not a traceback
            self._trace()
            err(f"error: {type(exc).__name__}: {exc}" + ("" if state.debug else " (--debug shows the traceback)"))
            raise typer.Exit(1) from None

    @staticmethod
    def _trace() -> None:
        if state.debug:
            traceback.print_exc()


# typer 0.29 prints a `<str>` / `<bool>` type tag after every option, even for flags. Show what
# click shows instead: nothing for flags, the metavar or an upper-case type name (TEXT, INTEGER).
_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "bool": ""}


def _display_type(self, ctx: Any) -> str:
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return ""
    if self.metavar:
        return self.metavar
    bare = self.bare_type()
    if bare.startswith("list[") and bare.endswith("]"):
        bare = bare[5:-1]
    return _TYPE_NAMES.get(bare, bare.upper())


typer.core._TyperParameter.display_type = _display_type  # type: ignore[method-assign]
