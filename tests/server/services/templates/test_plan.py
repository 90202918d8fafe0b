"""plan_template: refuses until the template's environment is prepared (and starts it), then plans
the relay around `sh -c 'cd INSTALL && exec START'` with the venv first on PATH; end to end the
planned command (a stdlib HTTP app importing a package from the template's venv) passes readiness
within serviceBootupTime, and one that never becomes ready does not."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import textwrap
import time

import httpx
import pytest

from modelyard.core.errors import BadRequest, Conflict
from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.orm.templates import ServiceTemplateModel
from modelyard.server.services import runtimes
from modelyard.server.services.templates import (
    TemplateInput,
    create_template,
    plan_template,
    template_env_spec,
)
from tests.server.services.templates.support import app_folder, wheel_index


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _yaml(port: int, index, boot: float = 20) -> str:
    return textwrap.dedent(f"""\
        services:
          - name: app
            ports: [{port}]
            livez: /livez
            readyz: /readyz
            serviceBootupTime: {boot}
        env: ["GREETING:hi-there"]
        python:
          requirements_txt: requirements.txt
          index_url: {index}
        """)


@pytest.fixture
def make(alice, settings, ctx_of, tmp_path):
    ctx = ctx_of(alice)
    index = wheel_index(settings, alice.id)
    principal = Principal(id=alice.id, name=alice.name, role="user")

    def make(name: str, port: int, boot: float = 20, prepare: bool = True) -> str:
        app_folder(settings, alice.id, rel=f"apps/{name}")
        with session_scope(ctx.sessions) as s:
            t = create_template(s, settings, principal, TemplateInput(
                name=name, yaml=_yaml(port, index, boot), request_cpu=1, request_memory_mib=256,
                start_command="python3 app.py", install_path=f"apps/{name}"))
            tid, spec = t.id, template_env_spec(t)
        if prepare:
            runtimes.prepare_env(settings, spec)
        return tid

    return ctx, make


def _plan(ctx, tid, sock="/tmp/tpl-test.sock"):
    with session_scope(ctx.sessions) as s:
        return plan_template(ctx.settings, s, template_id=tid, socket_path=sock, resources={})


def test_plan_refuses_until_prepared_then_plans_the_relay(make, settings, alice):
    ctx, make_template = make
    port = _free_port()
    tid = make_template("one", port, prepare=False)
    with session_scope(ctx.sessions) as s:
        spec = template_env_spec(s.get(ServiceTemplateModel, tid))
    try:
        plan = _plan(ctx, tid)  # creation started the preparation; it may already be done
    except Conflict as exc:
        assert exc.code == "template_env_not_ready" and "being prepared" in exc.message
        runtimes.prepare_env(settings, spec)  # waits for the running preparation, then finds it ready
        plan = _plan(ctx, tid)
    venv = str(runtimes.env_dir(settings, spec))
    install = str(settings.users_root / alice.id / "apps" / "one")
    assert plan.argv[1:7] == ["-m", "modelyard.runtime.relay", "--uds", "/tmp/tpl-test.sock", "--port", str(port)]
    assert plan.argv[7:] == ["--", "sh", "-c", f"cd {install} && exec python3 app.py"]
    assert plan.env["PATH"].startswith(f"{venv}/bin:") and plan.env["VIRTUAL_ENV"] == venv
    assert plan.env["GREETING"] == "hi-there" and plan.env["PORT"] == str(port)
    assert plan.binds == [(venv, False), (install, True)]
    assert (plan.ready_path, plan.live_path, plan.boot_timeout_s, plan.kind) == ("/readyz", "/livez", 20.0, "http")


def test_a_failed_environment_is_refused_with_its_log(make, settings, alice, wait_for):
    ctx, _ = make
    principal = Principal(id=alice.id, name=alice.name, role="user")
    app_folder(settings, alice.id, rel="apps/bad", requirements="no-such-pkg-zz\n")
    with session_scope(ctx.sessions) as s:
        t = create_template(s, settings, principal, TemplateInput(
            name="bad", yaml=_yaml(_free_port(), wheel_index(settings, alice.id, "w2")), request_cpu=1,
            request_memory_mib=256, start_command="python3 app.py", install_path="apps/bad"))
        tid, spec = t.id, template_env_spec(t)
    # creation started the preparation in the background; it fails on the unknown package
    wait_for(lambda: runtimes.env_status(settings, spec)["state"] == "failed", timeout=120)
    with pytest.raises(Conflict) as err:
        _plan(ctx, tid)
    assert err.value.code == "template_env_failed" and "no-such-pkg-zz" in err.value.details["log_tail"]


def _run(plan, tmp_path, extra_env):
    """The planned replica, unsandboxed: the whole argv when the relay exists on this branch, else
    the command after `--` on its TCP port."""
    relay = importlib.util.find_spec("modelyard.runtime.relay") is not None
    argv = plan.argv if relay else plan.argv[plan.argv.index("--") + 1:]
    env = {**os.environ, **plan.env, **extra_env}
    proc = subprocess.Popen(argv, env=env, stdout=open(tmp_path / "app.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    port = int(plan.argv[plan.argv.index("--port") + 1])
    client = (httpx.Client(transport=httpx.HTTPTransport(uds=plan.socket_path), base_url="http://replica")
              if relay else httpx.Client(base_url=f"http://127.0.0.1:{port}"))
    return proc, client


def _ready_within(proc, client, plan) -> httpx.Response | None:
    deadline = time.monotonic() + plan.boot_timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            r = client.get(plan.ready_path, timeout=2)
            if r.status_code == 200:
                return r
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return None


def _stop(proc):
    os.killpg(proc.pid, 9)
    proc.wait(10)


@pytest.mark.slow
def test_planned_app_passes_readiness_within_boot_time(make, tmp_path, alice, settings):
    ctx, make_template = make
    tid = make_template("web", _free_port(), boot=20)
    plan = _plan(ctx, tid, sock=str(tmp_path / "r.sock"))
    proc, client = _run(plan, tmp_path, {"READY_AFTER": "1"})
    try:
        r = _ready_within(proc, client, plan)
        assert r is not None, (tmp_path / "app.log").read_text()
        value, greeting, cwd = r.text.split(" ")
        assert value == "from-the-template-venv"  # imported from the template's venv via PATH
        assert greeting == "hi-there" and cwd == str(settings.users_root / alice.id / "apps" / "web")
        assert client.get(plan.live_path).status_code == 200
    finally:
        _stop(proc)


@pytest.mark.slow
def test_app_never_ready_is_not_ready_within_boot_time(make, tmp_path):
    ctx, make_template = make
    tid = make_template("stuck", _free_port(), boot=2)
    plan = _plan(ctx, tid, sock=str(tmp_path / "r.sock"))
    assert plan.boot_timeout_s == 2.0  # the serving reconciler fails the replica after this
    proc, client = _run(plan, tmp_path, {"NEVER_READY": "1"})
    try:
        started = time.monotonic()
        assert _ready_within(proc, client, plan) is None
        assert proc.poll() is None and time.monotonic() - started >= 2.0
        assert client.get(plan.live_path).status_code == 200  # alive, just never ready
    finally:
        _stop(proc)


def test_local_file_requirements_are_refused(alice, settings, ctx_of):
    ctx = ctx_of(alice)
    principal = Principal(id=alice.id, name=alice.name, role="user")
    for req in ("secret @ file:///etc/passwd", "./localpkg"):
        app_folder(settings, alice.id, rel="apps/x", requirements=req + "\n")
        with session_scope(ctx.sessions) as s, pytest.raises(BadRequest) as err:
            create_template(s, settings, principal, TemplateInput(
                name="x", yaml=_yaml(_free_port(), "https://pypi.org/simple"), request_cpu=1,
                request_memory_mib=256, start_command="python3 app.py", install_path="apps/x"))
        assert req in err.value.message
