"""plan_template: the LaunchPlan of one replica of a template service (called lazily by the
serving service, `modelyard.server.services.templates:plan_template`).

The replica runs the relay, which serves the replica's Unix socket and forwards to the template's
own TCP port (its first service port) inside the sandbox; the start command runs with `sh -c` in
the install folder (it is a shell command line as the seed writes it, e.g. "python3 app.py"), with
the template's virtualenv first on PATH.

Environment policy: a planner runs inside the serving reconciler and must not block it for the
minutes a large requirement set takes, so an environment that is not ready yet is never built
here synchronously: the plan refuses with 409 `template_env_not_ready` (or `template_env_failed`
with the log tail) and starts the preparation, so a deploy retried later finds it ready. Creating
the template already started it, so usually it is ready by the first deploy.
"""

from __future__ import annotations

import platform
import shlex
import sys

from sqlalchemy.orm import Session

from modelyard.core.errors import Conflict, NotFound
from modelyard.core.serving import LaunchPlan
from modelyard.server.orm.templates import ServiceTemplateModel
from modelyard.server.services import runtimes
from modelyard.server.services.common import resolve_user_path
from modelyard.server.services.templates.service import ARCHES, template_env_spec
from modelyard.server.settings import Settings

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def image_for_arch(t: ServiceTemplateModel, arch: str) -> str | None:
    """The image version a replica on a node of this architecture runs in (None: no image listed,
    the replica runs on the node's own root filesystem)."""
    if not t.images:
        return None
    want = ARCHES.get(arch.upper(), arch.lower())
    for i in t.images:
        if i["arch"] == want and i["field"] == "dockerImage":
            return i["image_version_id"]
    for i in t.images:
        if i["arch"] == want:
            return i["image_version_id"]
    raise Conflict(f"template {t.name} has no image for {want}", code="no_image_for_arch")


def plan_template(settings: Settings, session: Session, *, template_id: str, socket_path: str,
                  resources: dict) -> LaunchPlan:
    t = session.get(ServiceTemplateModel, template_id)
    if t is None:
        raise NotFound(f"template {template_id} not found")
    env: dict[str, str] = dict(t.spec.get("env") or {})
    binds: list[tuple[str, bool]] = []
    path = BASE_PATH
    spec = template_env_spec(t)
    if spec is not None:
        st = runtimes.env_status(settings, spec)
        if st["state"] != "ready":
            if st["state"] == "failed":
                raise Conflict(f"template {t.name}: preparing its Python environment failed: "
                               f"{st.get('error') or 'see the log tail'}", code="template_env_failed",
                               details={"log_tail": st.get("log_tail", "")[-2000:]})
            runtimes.start_env_prepare(settings, spec, key=f"template:{t.id}")
            raise Conflict(f"template {t.name}: its Python environment is being prepared "
                           f"({(st.get('progress') or {}).get('phase', 'starting')}); deploy again when it is ready",
                           code="template_env_not_ready")
        venv = runtimes.env_dir(settings, spec)
        binds.append((str(venv), False))
        path = f"{venv}/bin:{BASE_PATH}"
        env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = path
    service = t.spec["services"][0]
    port = int(service["ports"][0])
    env.setdefault("PORT", str(port))
    command = t.start_command
    if t.install_path:
        install = resolve_user_path(settings, t.owner_id, t.install_path)
        binds.append((str(install), True))  # the owner's own folder: the app may write beside itself
        command = f"cd {shlex.quote(str(install))} && exec {t.start_command}"
    argv = [sys.executable, "-m", "modelyard.runtime.relay", "--uds", socket_path, "--port", str(port),
            "--", "sh", "-c", command]
    # the node's architecture must have an image when the template lists images (the serving
    # service asks image_for_arch which one the replica runs in)
    image_for_arch(t, str(resources.get("arch") or platform.machine()))
    return LaunchPlan(argv=argv, socket_path=socket_path, env=env, ready_path=service["readyz"],
                      live_path=service["livez"], boot_timeout_s=float(service["serviceBootupTime"]),
                      binds=binds, served_names=[t.name], kind="http")
