"""Named helpers for the template tests: the seed 003 example body (its ids and host-specific
values swapped for real ones), images in the registry, a node GPU, an app folder in a user's files."""

from __future__ import annotations

import platform
import textwrap
from pathlib import Path

from modelyard.server.db import session_scope
from modelyard.server.orm import NodeModel
from modelyard.server.orm.images import ImageModel, ImageVersionModel
from tests.server.services.runtimes.wheels import build_wheel

# the seed's YAML with its indentation restored (the seed's text lost it and does not parse)
SEED_YAML = textwrap.dedent("""\
    services:
      - ports:
          - 3000
        name: qwen1.5-7b-chat:2b34xhrmqwhomjkd
        livez: /livez
        readyz: /readyz
        serviceBootupTime: 30
    env:
      - key:value
      - GREETING:hello
    distro:
      packages: vim,coreutils
    python:
      requirements_txt: ./requirements.txt
      index_url: {index}
      trusted_host: pypi.tuna.tsinghua.edu.cn
    """)

# exactly the seed's string
SEED_YAML_LITERAL = ("services:\n - ports:\n - 3000\n name: qwen1.5-7b-chat:2b34xhrmqwhomjkd\n livez: /livez\n"
                     " readyz: /readyz\n serviceBootupTime: 30\nenv:\n - key:value\n - key:value\ndistro:\n"
                     " packages: vim,nfs-utils\npython:\n requirements_txt: ./requirements.txt\n"
                     " index_url: https://pypi.tuna.tsinghua.edu.cn/simple\n trusted_host: pypi.tuna.tsinghua.edu.cn")

INSTALL = "/opt/zstack/ai/model-services/qwen1.5-7b-chat"


def seed_body(*, index: str, x86_image: str, x86_vm: str, arm_image: str, **param_over) -> dict:
    param = {
        "name": "text to text model service",
        "description": "This is text to text model service you can chose model",
        "yaml": SEED_YAML.format(index=index),
        "modelCenterUuid": "modelCenterUuidExample",
        "installPath": INSTALL,
        "requestCpu": 4,
        "requestMemory": 1024,
        "gpuComputeCapability": "7.5",
        "startCommand": "python3 app.py",
        "pythonVersion": platform.python_version(),
        "type": "Endpoint",
        "source": "Other",
        "architectureImages": [
            {"cpuArchitecture": "X86_64", "vmImageUuid": x86_vm, "dockerImage": x86_image},
            {"cpuArchitecture": "AARCH64", "dockerImage": arm_image},
        ],
        "supportDistributed": False,
    }
    param.update(param_over)
    return {"param": {k: v for k, v in param.items() if v is not None}, "systemTags": [], "userTags": []}


def add_image_version(ctx, owner_id: str, name: str, tag: str, arch: str) -> str:
    """An image version row in the registry (the template only resolves it; no blobs needed)."""
    with session_scope(ctx.sessions) as s:
        img = ImageModel(owner_id=owner_id, name=name)
        s.add(img)
        s.flush()
        v = ImageVersionModel(image_id=img.id, tag=tag, archive_format="docker", manifest_digest="sha256:" + "a" * 64,
                              config_digest="sha256:" + "b" * 64, os="linux", architecture=arch)
        s.add(v)
        s.flush()
        return v.id


def give_node_gpu(ctx, capability: str) -> None:
    with session_scope(ctx.sessions) as s:
        for node in s.query(NodeModel):
            node.gpu_info = [{"name": "test GPU", "memory_mib": 16384, "compute_capability": capability}]


def wheel_index(settings, user_id: str, rel: str = "wheelhouse") -> str:
    """A folder of wheels in the user's files; returns how a template names it ("/wheelhouse")."""
    build_wheel(settings.users_root / user_id / rel, "tinypkg", "1.0", "VALUE = 'from-the-template-venv'\n")
    return "/" + rel


APP = textwrap.dedent("""\
    import os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import tinypkg

    READY_AFTER = float(os.environ.get("READY_AFTER", "0"))
    NEVER_READY = os.environ.get("NEVER_READY") == "1"
    started = time.monotonic()

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            ready = not NEVER_READY and time.monotonic() - started >= READY_AFTER
            if self.path == "/readyz" and not ready:
                self.send_response(503); self.end_headers(); return
            body = f"{tinypkg.VALUE} {os.environ.get('GREETING', '')} {os.getcwd()}".encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """)


def app_folder(settings, user_id: str, rel: str = INSTALL, requirements: str = "tinypkg==1.0\n") -> Path:
    d = settings.users_root / user_id / rel.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    (d / "app.py").write_text(APP)
    (d / "requirements.txt").write_text(requirements)
    return d
