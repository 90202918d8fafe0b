"""Seed 003: POST /zstack/v1/ai/model-services answers the seed's inventory, or its error shape
with a clear reason and nothing stored."""

from __future__ import annotations

import copy
import subprocess

import pytest

from tests.server.services.templates.support import (
    INSTALL,
    SEED_YAML_LITERAL,
    add_image_version,
    app_folder,
    give_node_gpu,
    seed_body,
    wheel_index,
)

PATH = "/zstack/v1/ai/model-services"


@pytest.fixture
def world(alice, settings, ctx_of, tmp_path):
    ctx = ctx_of(alice)
    give_node_gpu(ctx, "8.0")
    x86 = add_image_version(ctx, alice.id, "myimage", "latest", "amd64")
    add_image_version(ctx, alice.id, "myimage-arm", "latest", "arm64")
    app_folder(settings, alice.id)
    index = wheel_index(settings, alice.id)
    return {"ctx": ctx, "body": seed_body(index=index, x86_image="myimage:latest", x86_vm=x86,
                                          arm_image="myimage-arm:latest"), "x86": x86}


def _stored(alice) -> int:
    return alice.get("/api/v1/templates").json()["total"]


def test_seed_example_body_gives_the_inventory(alice, world, wait_for):
    r = alice.post(PATH, json=world["body"], headers={"Authorization": f"OAuth {alice.token}"})
    assert r.status_code == 200, r.text
    inv = r.json()["inventory"]
    p = world["body"]["param"]
    for key in ("name", "description", "yaml", "requestCpu", "requestMemory", "startCommand", "gpuComputeCapability",
                "modelCenterUuid", "type", "source", "pythonVersion", "supportDistributed"):
        assert inv[key] == p[key], key
    assert inv["installPath"] == INSTALL.lstrip("/")
    assert inv["cpuArchitectures"] == ["AARCH64", "X86_64"]
    assert {"cpuArchitecture": "X86_64", "vmImageUuid": world["x86"], "imageUuid": world["x86"]} in inv["modelServiceImages"]
    assert len(inv["uuid"]) == 32 and inv["createDate"] and inv["system"] is False
    # stored, and its Python environment is prepared from the local wheel folder
    shown = alice.get(f"/api/v1/templates/{inv['uuid']}").json()
    assert shown["spec"]["env"] == {"key": "value", "GREETING": "hello"}
    assert shown["spec"]["distro"] == ["vim", "coreutils"]
    assert shown["spec"]["python"]["resolved_requirements"] == ["tinypkg==1.0"]
    env = wait_for(lambda: (e := alice.get(f"/api/v1/templates/{inv['uuid']}").json()["environment"])["state"]
                   in ("ready", "failed") and e, timeout=120)
    assert env["state"] == "ready", env
    out = subprocess.run([f"{env['path']}/bin/python", "-c", "import tinypkg; print(tinypkg.VALUE)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "from-the-template-venv"


def _refused(alice, body, status, code, words):
    before = _stored(alice)
    r = alice.post(PATH, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    assert set(err) == {"code", "description", "details", "elaboration", "opaque", "cause"}
    for w in words:
        assert w in err["details"], err["details"]
    assert _stored(alice) == before
    return err


def _with(body, **param):
    b = copy.deepcopy(body)
    b["param"].update(param)
    return {**b, "param": {k: v for k, v in b["param"].items() if v is not None}}


def test_the_seeds_literal_yaml_is_refused_with_where_it_breaks(alice, world):
    _refused(alice, _with(world["body"], yaml=SEED_YAML_LITERAL), 400, "invalid_template",
             ["yaml does not parse at line 4"])


@pytest.mark.parametrize("change, code, words", [
    ({"startCommand": None}, "invalid_template", ["startCommand is required"]),
    ({"type": "Generator"}, "unsupported_type", ["Generator", "Endpoint"]),
    ({"gpuComputeCapability": "9.0"}, "no_matching_node", ["compute capability >= 9.0"]),
    ({"condaVersion": "4.9.2"}, "unsupported_field", ["condaVersion", "uv"]),
    ({"zoneUuid": "z1"}, "unsupported_field", ["zoneUuid"]),
    ({"supportDistributed": True}, "unsupported_field", ["supportDistributed"]),
    ({"pythonVersion": "3.8.10"}, "python_unavailable", ["3.8.10"]),
    ({"installPath": "/no/such/folder"}, "invalid_path", ["installPath"]),
    ({"madeUpField": 1}, "unsupported_field", ["param.madeUpField"]),
    ({"architectureImages": [{"cpuArchitecture": "X86_64", "dockerImage": "nope:latest"}]}, "image_not_found",
     ["nope:latest", "image registry"]),
    ({"architectureImages": [{"cpuArchitecture": "RISCV", "dockerImage": "myimage:latest"}]}, "invalid_template",
     ["RISCV"]),
    ({"architectureImages": [{"cpuArchitecture": "AARCH64", "dockerImage": "myimage:latest"}]}, "invalid_template",
     ["built for amd64"]),
    ({"requestCpu": -1}, "invalid_request", ["requestCpu"]),
])
def test_bad_fields_are_refused_and_nothing_is_stored(alice, world, change, code, words):
    _refused(alice, _with(world["body"], **change), 400, code, words)


def test_missing_distro_package_is_refused(alice, world):
    yaml = world["body"]["param"]["yaml"].replace("vim,coreutils", "vim,nfs-utils")
    _refused(alice, _with(world["body"], yaml=yaml), 400, "distro_package_missing",
             ["nfs-utils", "does not install"])


def test_unknown_yaml_key_and_bad_port_are_refused(alice, world):
    y = world["body"]["param"]["yaml"]
    _refused(alice, _with(world["body"], yaml=y.replace("/wheelhouse", "file:///etc")), 400, "invalid_template",
             ["folder in your files"])
    _refused(alice, _with(world["body"], yaml=y.replace("/wheelhouse", "/etc")), 400, "invalid_template",
             ["not a folder in your files"])
    _refused(alice, _with(world["body"], yaml=y + "gpu: all\n"), 400, "unsupported_field", ["gpu"])
    _refused(alice, _with(world["body"], yaml=y.replace("- 3000", "- 70000")), 400, "invalid_template",
             ["70000"])


def test_another_users_image_is_not_visible(alice, bob, world):
    add_image_version(world["ctx"], bob.id, "bobs", "1", "amd64")
    body = _with(world["body"], architectureImages=[{"cpuArchitecture": "X86_64", "dockerImage": "bobs:1"}])
    _refused(alice, body, 400, "image_not_found", ["bobs:1"])


def test_system_template_needs_admin_and_name_is_unique(alice, world):
    _refused(alice, _with(world["body"], system=True), 403, "forbidden", ["admin"])
    assert alice.post(PATH, json=world["body"]).status_code == 200
    _refused(alice, world["body"], 409, "name_taken", ["text to text model service"])


def test_unauthenticated_gets_the_error_shape(app_client, world):
    r = app_client.post(PATH, json=world["body"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
