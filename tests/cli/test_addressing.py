"""Every object kind addressed by name, unique id prefix, NAME:VERSION / alias through the CLI
(the server resolves the references; the CLI passes them through)."""

from __future__ import annotations

import pytest

from tests.cli.conftest import chat_jsonl, docker_save_tar, put_file

pytestmark = pytest.mark.background


def test_datasets_images_and_jobs_by_name_prefix_and_version(cli, alice, bob, settings, submit_custom, wait_state,
                                                             tmp_path):
    # datasets: name, prefix, name:version
    put_file(settings, alice, "Data/train/train.jsonl", chat_jsonl())
    ds = cli.json(alice, "datasets", "create", "refs", "--path", "Data")
    cli(alice, "datasets", "create", "refs", "--path", "Data")  # version 2
    did = ds["dataset_id"]
    for ref in ("refs", did, did[:6]):
        assert cli.json(alice, "datasets", "show", ref)["id"] == did, ref
    assert cli.json(alice, "datasets", "show", "refs:1")["id"] == ds["id"]
    assert cli.json(alice, "datasets", "show", f"{did[:6]}:2")["version"] == 2
    cli(bob, "datasets", "show", "refs", code=1)  # another user's name is not found for bob

    # images: name, prefix, name:tag
    local = tmp_path / "app.tar"
    local.write_bytes(docker_save_tar("team/app:1.0"))
    cli(alice, "images", "import", "team/app", "Image/app.tar", "--upload", local)
    img = cli.json(alice, "images", "show", "team/app")
    for ref in ("team/app", img["id"][:6]):
        assert cli.json(alice, "images", "show", ref)["id"] == img["id"], ref
    assert cli.json(alice, "images", "show", "team/app:1.0")["tag"] == "1.0"

    # jobs: name, prefix; rm refuses a running job, then deletes a finished one
    job = submit_custom(alice, "sleep 20", name="named-job")
    wait_state(alice, job["id"], "running")
    for ref in ("named-job", job["id"][:6]):
        assert cli.json(alice, "jobs", "show", ref)["id"] == job["id"], ref
    r = cli(alice, "jobs", "rm", "named-job", "-y", code=1)
    assert r.output.startswith("error: job_active: ") and r.output.count("\n") == 1
    cli(alice, "jobs", "cancel", "named-job")
    wait_state(alice, job["id"], "cancelled")
    r = cli(alice, "jobs", "rm", job["id"][:6], input="n\n", code=1)
    assert "delete job" in r.output
    cli(alice, "jobs", "rm", "named-job", "-y")
    assert alice.get(f"/api/v1/jobs/{job['id']}").status_code == 404


def test_users_rm_refuses_a_busy_user_unless_forced(cli, admin, bob, submit_custom, wait_state):
    job = submit_custom(bob, "sleep 30", name="bobs-work")
    wait_state(bob, job["id"], "running")
    r = cli(admin, "users", "rm", "bob", "-y", code=1)
    assert r.output.startswith("error: user_busy: ") and r.output.count("\n") == 1
    r = cli(admin, "users", "rm", "bob", input="n\n", code=1)
    assert "delete user bob" in r.output
    cli(admin, "users", "rm", "bob", "--force", "-y")
    assert "bob" not in {u["name"] for u in cli.json(admin, "users", "ls")}
    assert wait_state(admin, job["id"], ("cancelled", "failed"))["state"] == "cancelled"
