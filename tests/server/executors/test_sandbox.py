"""The job sandbox (issue 8), tried as an ordinary user trying to reach what is not theirs: the
server's secrets (admin token in its environment and in admin.token), the database, another
user's files and job folders, other processes; then the limits (memory kill with its reason, CPU
affinity) and a job inside a real image (a static busybox written into a docker-save archive
here) with its Env, WorkingDir, User, whiteouts and the documented mounts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from modelyard.server.executors import sandbox as sandbox_mech
from tests.harness import submit_custom, wait_state
from tests.server.services.images.test_images import docker_save_entries, image_config, sha, write_tar

pytestmark = [pytest.mark.background, pytest.mark.timeout(120),
              pytest.mark.skipif(sandbox_mech.unavailable_reason() is not None,
                                 reason=f"no sandbox here: {sandbox_mech.unavailable_reason()}")]

SECRET_ENV = "MODELYARD_ADMIN_TOKEN"


def _log(user, job_id) -> str:
    r = user.get(f"/api/v1/jobs/{job_id}/logs")
    assert r.status_code == 200, r.text
    return r.text


def _run(user, command: str, **extra) -> tuple[dict, str]:
    job = submit_custom(user, command, **extra)
    done = wait_state(user, job["id"], {"succeeded", "failed"})
    return done, _log(user, job["id"])


def _launch_record(settings, job: dict) -> dict:
    rdir = Path(job["spec"]["job_dir"]) / "master-0"
    return json.loads((rdir / "launch.json").read_text())


@pytest.fixture
def secret_token(monkeypatch):
    """The server process's environment holds a secret (as a real deployment's would)."""
    value = "sekrit-" + hashlib.sha256(os.urandom(8)).hexdigest()[:16]
    monkeypatch.setenv(SECRET_ENV, value)
    return value


def test_job_cannot_read_server_environment(alice, secret_token):
    done, log = _run(alice, "env; for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null | tr '\\0' '\\n'; done; "
                            "ls /proc | grep -c '^[0-9]' ; echo end-of-probe")
    assert done["state"] == "succeeded" and "end-of-probe" in log
    assert secret_token not in log and SECRET_ENV not in log
    # its own PID namespace: a handful of processes (bwrap's init, the shell, ls, grep), not the host's
    nprocs = int(log.strip().splitlines()[-2])
    assert nprocs < 10
    assert _launch_record(None, done)["sandboxed"] is True


def test_job_cannot_read_admin_token_file_or_database(alice, settings):
    token_file = settings.home / "admin.token"
    token_file.write_text("file-secret-123\n")
    db = settings.home / "modelyard.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    done, log = _run(alice, f"cat {token_file}; cat {db} | head -c 100; echo x >> {db}; echo pwned > {token_file}; "
                            f"ls -a {settings.home}; echo probe-done")
    assert "probe-done" in log
    assert "file-secret-123" not in log and "SQLite format" not in log
    assert token_file.read_text() == "file-secret-123\n"
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    # and the API still says alice is not an admin
    assert alice.get("/api/v1/users").status_code == 403


def test_job_cannot_reach_another_users_files_or_jobs(alice, bob, settings):
    secret = settings.users_root / bob.id / "private" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("bob-private-42\n")
    bob_job = submit_custom(bob, "echo bob-job-log-77 > $MODELYARD_OUTPUT_DIR/result.txt; echo bob-job-log-77")
    bob_done = wait_state(bob, bob_job["id"], "succeeded")
    bob_dir = bob_done["spec"]["job_dir"]
    done, log = _run(alice, f"cat {secret}; ls {settings.users_root}; cat {bob_dir}/master-0/output.log; "
                            f"cat {bob_dir}/output/result.txt; echo tamper > {bob_dir}/output/result.txt; "
                            "echo probe-done")
    assert "probe-done" in log
    assert "bob-private-42" not in log and "bob-job-log-77" not in log
    listed = [x for x in log.splitlines()[1:] if not x.startswith(("cat:", "/bin/sh:")) and x != "probe-done"]
    assert listed == [alice.id]  # the users' folder holds only her own root
    assert (Path(bob_dir) / "output" / "result.txt").read_text() == "bob-job-log-77\n"
    # her own root is there, read-write, at its path and at /data
    mine = settings.users_root / alice.id / "mine.txt"
    done, log = _run(alice, f"echo written-inside > /data/mine.txt; cat {mine}")
    assert done["state"] == "succeeded" and "written-inside" in log and mine.read_text() == "written-inside\n"


def test_job_cannot_signal_other_processes(alice, bob):
    victim = submit_custom(bob, "sleep 60")
    running = wait_state(bob, victim["id"], "running")
    pid = running["replicas"][0]["pid"]
    done, log = _run(alice, f"kill -9 {pid}; echo rc=$?; kill -9 -1; echo probe-done")
    assert "probe-done" in log
    assert bob.get(f"/api/v1/jobs/{victim['id']}").json()["state"] == "running"
    bob.post(f"/api/v1/jobs/{victim['id']}/cancel")
    wait_state(bob, victim["id"], "cancelled")


def test_job_has_no_network_but_loopback(alice):
    done, log = _run(alice, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; echo probe-done")
    assert "probe-done" in log
    ifaces = [x for x in log.splitlines()[1:] if x and x != "probe-done"]  # line 1: the launch banner
    assert ifaces == ["lo"]


def test_memory_limit_kills_with_reason(alice):
    done, log = _run(alice, "python -c \"x = bytearray(400 << 20); print('allocated', len(x))\"", memory_mib=96)
    assert done["state"] == "failed", log
    assert "allocated" not in log
    assert "memory limit (96 MiB)" in done["replicas"][0]["message"] or \
        "limited to 96 MiB" in done["replicas"][0]["message"], done["replicas"][0]


def test_cpu_affinity_matches_allocation(alice):
    done, log = _run(alice, "python -c \"import os; print('cores', len(os.sched_getaffinity(0)))\"", cpu=1)
    assert done["state"] == "succeeded" and "cores 1" in log, log
    assert len(_launch_record(None, done)["cores"]) == 1


# --- images ------------------------------------------------------------------------------------

def _busybox_layers() -> tuple[bytes, bytes]:
    """Layer 1: a static busybox with a few applets, /etc/passwd naming user app (1000), a marker
    file only this image has, and files layer 2 deletes (a whiteout) or hides (an opaque dir)."""
    bb = Path("/bin/busybox").read_bytes()

    def tar(entries: list[tuple[str, bytes | str | None, int]]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name, data, mode in entries:
                ti = tarfile.TarInfo(name)
                ti.mtime, ti.mode = 0, mode
                if data is None:
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                elif isinstance(data, str):
                    ti.type, ti.linkname = tarfile.SYMTYPE, data
                    tf.addfile(ti)
                else:
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    applets = ["sh", "cat", "ls", "id", "env", "echo", "pwd", "tr", "head", "touch", "test"]
    l1 = tar([("bin", None, 0o755), ("bin/busybox", bb, 0o755), *[(f"bin/{a}", "busybox", 0o777) for a in applets],
              ("etc", None, 0o755), ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n", 0o644),
              ("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644),
              ("etc/image-marker", b"only-in-the-busybox-image\n", 0o644),
              ("gone.txt", b"deleted by layer 2\n", 0o644),
              ("opt", None, 0o755), ("opt/old", None, 0o755), ("opt/old/a.txt", b"a\n", 0o644),
              ("srv", None, 0o755)])
    l2 = tar([(".wh.gone.txt", b"", 0o644), ("opt/old", None, 0o755), ("opt/old/.wh..wh..opq", b"", 0o644),
              ("opt/old/c.txt", b"c\n", 0o644)])
    return l1, l2


@pytest.fixture
def busybox_image(alice, settings):
    l1, l2 = _busybox_layers()
    cfg = image_config([sha(l1), sha(l2)], config={
        "Env": ["PATH=/bin", "IMG_FLAVOR=busybox"], "Cmd": ["/bin/sh", "-c", "echo default-cmd-in-image"],
        "WorkingDir": "/srv", "User": "app"})
    entries = docker_save_entries([l1, l2], repo_tag="tools/busybox:1.0", config=cfg["config"])
    write_tar(settings.users_root / alice.id / "Image" / "busybox.tar", entries)
    r = alice.post("/api/v1/images", json={"name": "tools/busybox"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = alice.post(f"/api/v1/images/{image_id}/versions", json={"path": "Image/busybox.tar", "tag": "1.0"})
    assert r.status_code in (200, 201), r.text
    return {"image_id": image_id, "version_id": r.json()["id"], "ref": "tools/busybox:1.0"}


def test_image_job_runs_inside_the_image(alice, settings, busybox_image):
    done, log = _run(alice, "cat /etc/image-marker; echo flavor=$IMG_FLAVOR; id -u; id -g; pwd; "
                            "ls /opt/old; test -e /gone.txt && echo gone-still-there; test -e /usr/bin/python3 "
                            "&& echo host-usr-visible; echo in-output > /output/o.txt; echo probe-done",
                     image=busybox_image["ref"])
    assert done["state"] == "succeeded", log
    assert "only-in-the-busybox-image" in log and "flavor=busybox" in log
    lines = log.splitlines()
    assert lines[lines.index("flavor=busybox") + 1: lines.index("flavor=busybox") + 4] == ["1000", "1000", "/srv"]
    assert "c.txt" in log and "a.txt" not in log  # opaque dir: layer 1's a.txt hidden
    assert "gone-still-there" not in log and "host-usr-visible" not in log
    assert (Path(done["spec"]["output_dir"]) / "o.txt").read_text() == "in-output\n"
    # the rootfs is cached per manifest, and the image cannot be deleted while a job uses it
    caches = list((settings.data_dir / "rootfs").iterdir())
    assert len(caches) == 1 and (caches[0] / ".modelyard-rootfs-complete").exists()
    # no command: the image's Cmd
    done2, log2 = _run(alice, None, image=busybox_image["ref"])
    assert done2["state"] == "succeeded" and "default-cmd-in-image" in log2


def test_image_in_use_refused_and_rootfs_collected(alice, admin, settings, busybox_image):
    job = submit_custom(alice, "sleep 60", image=busybox_image["ref"])
    wait_state(alice, job["id"], "running")
    r = alice.delete(f"/api/v1/images/{busybox_image['image_id']}/versions/{busybox_image['version_id']}")
    assert r.status_code == 409, r.text
    alice.post(f"/api/v1/jobs/{job['id']}/cancel")
    wait_state(alice, job["id"], "cancelled")
    assert len(list((settings.data_dir / "rootfs").iterdir())) == 1
    r = alice.delete(f"/api/v1/images/{busybox_image['image_id']}/versions/{busybox_image['version_id']}")
    assert r.status_code in (200, 204), r.text
    assert list((settings.data_dir / "rootfs").iterdir()) == []


def test_layers_that_escape_are_refused(tmp_path):
    from modelyard.server.services.images import rootfs

    def layer(entries) -> Path:
        p = tmp_path / f"l{len(list(tmp_path.iterdir()))}.tar"
        with tarfile.open(p, "w") as tf:
            for name, kind, data in entries:
                ti = tarfile.TarInfo(name)
                if kind == "sym":
                    ti.type, ti.linkname = tarfile.SYMTYPE, data
                    tf.addfile(ti)
                elif kind == "hard":
                    ti.type, ti.linkname = tarfile.LNKTYPE, data
                    tf.addfile(ti)
                else:
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        return p

    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    for bad, why in [([("../evil", "file", b"x")], "climbs out"),
                     ([("/etc/evil", "file", b"x")], "absolute"),
                     ([("x", "sym", str(outside)), ("x/evil", "file", b"x")], "through the link"),
                     ([("h", "hard", "../../etc/passwd")], "climbs out")]:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        with pytest.raises(rootfs.RootfsError, match=why):
            rootfs.apply_layer(root, layer(bad), what="layer 1")
    assert list(outside.iterdir()) == []
    # a later layer's link cannot redirect a whiteout outside either
    shutil.rmtree(root)
    root.mkdir()
    (outside / "keep.txt").write_text("keep")
    rootfs.apply_layer(root, layer([("d", "sym", str(outside))]), what="layer 1")
    rootfs.apply_layer(root, layer([("d/.wh.keep.txt", "file", b"")]), what="layer 2")
    assert (outside / "keep.txt").exists()


def test_home_database_and_job_folders_are_private(alice, settings):
    assert settings.home.stat().st_mode & 0o777 == 0o700
    assert settings.data_dir.stat().st_mode & 0o777 == 0o700
    assert (settings.home / "modelyard.db").stat().st_mode & 0o777 == 0o600
    done, _ = _run(alice, "true")
    assert (Path(done["spec"]["job_dir"]) / "master-0").stat().st_mode & 0o777 == 0o700
