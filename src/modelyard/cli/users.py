"""`modelyard users ls|show|create|rm` (admin)."""

from __future__ import annotations

import typer

from modelyard.cli._common import (
    client,
    confirm,
    is_wide,
    json_option,
    output_option,
    print_json,
    print_table,
    say,
    yes_option,
)

app = typer.Typer(help="Users (admin).", no_args_is_help=True)


@app.command("ls")
def ls(as_json: bool = json_option(), output: str = output_option()) -> None:
    """Every user."""
    wide = is_wide(output)
    users = client().users.list()
    if as_json:
        print_json(users)
        return
    cols = ["id", "name", "role", "created"] + (["disabled"] if wide else [])
    print_table(cols, [[u["id"], u["name"], u["role"], str(u["created_at"])[:19]]
                       + (["yes" if u.get("disabled") else ""] if wide else []) for u in users])


@app.command("create")
def create(name: str = typer.Argument(..., help="login name"),
           role: str = typer.Option("user", help="user | admin"), as_json: bool = json_option()) -> None:
    """A new user; prints its first token (shown once: hand it over, it is not stored)."""
    u = client().users.create(name, role)
    if as_json:
        print_json(u)
        return
    say(f"created user [bold]{u['name']}[/] ({u['id']}); token (shown once):")
    say(u["token"])


@app.command("rm")
def rm(user: str = typer.Argument(..., help="name, id or id prefix"), yes: bool = yes_option(),
       force: bool = typer.Option(False, "--force", help="cancel the user's running work first")) -> None:
    """Delete a user (refused while they have running jobs or services, unless --force)."""
    confirm(f"delete user {user}{' and cancel their running work' if force else ''}?", yes)
    client().users.delete(user, force=force)
    say(f"deleted user {user}")
