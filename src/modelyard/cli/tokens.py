"""`modelyard tokens ls|create|rm`: your API tokens (rm revokes)."""

from __future__ import annotations

import typer

from modelyard.cli._common import client, confirm, json_option, print_json, print_table, say, yes_option

app = typer.Typer(help="Your API tokens: list, create, revoke (rm).", no_args_is_help=True)


@app.command("ls")
def ls(as_json: bool = json_option(),
       all_: bool = typer.Option(False, "--all", "-a", help="revoked ones too")) -> None:
    """Your tokens (never the secret: its first characters only)."""
    tokens = client().tokens.list()
    if not all_:
        tokens = [t for t in tokens if not t.get("revoked_at")]
    if as_json:
        print_json(tokens)
        return
    print_table(["id", "name", "prefix", "created", "last used", "revoked"],
                [[t["id"], t["name"], t["prefix"], str(t["created_at"])[:19], str(t["last_used_at"] or "")[:19],
                  str(t["revoked_at"] or "")[:19]] for t in tokens])


@app.command("create")
def create(name: str = typer.Argument("default", help="a label, e.g. laptop or ci"),
           as_json: bool = json_option()) -> None:
    """A new token for you; the secret is printed once."""
    t = client().tokens.create(name)
    if as_json:
        print_json(t)
        return
    say(f"created token [bold]{t['name']}[/] ({t['id']}); secret (shown once):")
    say(t["token"])


@app.command("rm")
def rm(token_id: str = typer.Argument(..., help="the token's id (`modelyard tokens ls`)"),
       yes: bool = yes_option()) -> None:
    """Revoke a token: requests with it answer 401 from now on."""
    confirm(f"revoke token {token_id}?", yes)
    client().tokens.revoke(token_id)
    say(f"revoked token {token_id}")
