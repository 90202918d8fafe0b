"""`modelyard chat SERVICE[:VERSION|ADAPTER]`: a streaming chat with a service in the terminal,
through the platform's OpenAI-compatible gateway ($MODELYARD_URL/v1, the user's token).

Interactive on a terminal: the history is kept across turns, `/reset` forgets it, `/exit` or
Ctrl-D leaves, Ctrl-C stops the answer being written; a failed turn is one line on stderr and the
session goes on. With stdin not a terminal (a pipe, a script) it reads one prompt from stdin,
streams the answer to stdout and exits; a failure there is the root group's one line and exit code
(README "CLI conventions")."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import httpx
import typer

from modelyard.cli._common import _unreachable, client, console, err
from modelyard.sdk import APIError
from modelyard.sdk._client import raise_for


def stream_reply(http: httpx.Client, body: dict, write: Callable[[str], None]) -> str:
    """POST /v1/chat/completions with stream on; each piece of the answer goes to write() as it
    arrives. Returns the whole answer; an error answer (before or inside the stream) raises APIError."""
    parts: list[str] = []
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True},
                     timeout=httpx.Timeout(600.0, connect=10.0)) as resp:
        if resp.status_code >= 400:
            resp.read()
            raise_for(resp)
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("error"):
                e = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                raise APIError(resp.status_code, e.get("code") or "stream_error", str(e.get("message", e)))
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    parts.append(piece)
                    write(piece)
    return "".join(parts)


def chat(model: str = typer.Argument(..., metavar="SERVICE[:VERSION|ADAPTER]",
                                     help="a service name, SERVICE:VERSION, or an adapter a service serves"),
         system: str | None = typer.Option(None, "--system", help="a system prompt"),
         # conversational defaults (small models ramble at OpenAI's temperature 1 with no cap)
         temperature: float | None = typer.Option(0.3, "--temperature", min=0.0, max=2.0,
                                                  help="sampling temperature (0: greedy)"),
         top_p: float | None = typer.Option(0.9, "--top-p", min=0.0, max=1.0, help="nucleus sampling mass"),
         max_tokens: int | None = typer.Option(512, "--max-tokens", min=1, help="most tokens per answer"),
         interactive: bool | None = typer.Option(None, "--interactive/--once",
                                                 help="default: interactive on a terminal, one prompt from stdin otherwise")) -> None:
    """Chat with a service (streamed). Interactive: /reset forgets the history, /exit or Ctrl-D leaves."""
    http = client().http
    options = {k: v for k, v in (("temperature", temperature), ("top_p", top_p), ("max_tokens", max_tokens))
               if v is not None}
    start = [{"role": "system", "content": system}] if system else []
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        prompt = sys.stdin.read().strip()
        if not prompt:
            err("error: no prompt on stdin (pipe one in, or run it on a terminal for an interactive chat)")
            raise typer.Exit(2)
        # failures go up to the root group: one line, exit 1 (2: the server cannot be reached)
        stream_reply(http, {"model": model, "messages": start + [{"role": "user", "content": prompt}], **options},
                     lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
        sys.stdout.write("\n")
        return
    _interactive(http, model, start, options)


def _show(piece: str, written: list[str]) -> None:
    written.append(piece)
    console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)


def _interactive(http: httpx.Client, model: str, start: list[dict], options: dict) -> None:
    console.print(f"[bold]{model}[/] — /reset forgets the conversation, /exit or Ctrl-D leaves")
    messages = list(start)
    while True:
        try:
            text = console.input("[bold green]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        command = text.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            messages = list(start)
            console.print("[dim]history cleared[/]")
            continue
        if not command:
            continue
        messages.append({"role": "user", "content": text})
        console.print(f"[bold blue]{model}>[/] ", end="")
        written: list[str] = []
        try:
            reply = stream_reply(http, {"model": model, "messages": messages, **options},
                                 lambda piece, out=written: _show(piece, out))
        except KeyboardInterrupt:  # stop this answer, keep what was said
            reply = "".join(written)
        except (APIError, httpx.HTTPError) as exc:  # one failed turn does not end the session
            console.print()
            err(_turn_failure(exc))
            messages.pop()
            continue
        console.print()
        messages.append({"role": "assistant", "content": reply})


def _turn_failure(exc: Exception) -> str:
    """The root group's one line for what failed a turn (the session stays open)."""
    if isinstance(exc, APIError):
        return f"error: {exc.code}: {exc.message}"
    if isinstance(exc, httpx.TransportError):
        return _unreachable(exc)
    return f"error: {type(exc).__name__}: {exc}"
