"""The seed's task fields (seed 000 §4.1 / §5.1) honoured or refused with a reason: hyperparameters
reach a custom command as `--name=value` and as the JSON file $MODELYARD_HPARAMS names; the
${output_dir}/${model_dir}/${data_dir}/${checkpoint_dir} placeholders; outputDir / checkPointDir
validated as folders in the user's files and written there; type/createWay/algorithmId kept and
shown; rdma / storageMedium 1203 / devices refused; zoneId / nodeName placement; urgent and
high-priority tasks need an allowance; search_id must be the caller's own."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel

pytestmark = [pytest.mark.background, pytest.mark.timeout(120)]
FT = "/kernel/fineTune"


def _create(user, body: dict, expect: int = 200) -> dict:
    r = user.post(f"{FT}/createLlmFineTuneTask", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def _detail(user, task_id: str) -> dict:
    r = user.post(f"{FT}/queryLlmFineTuneTaskDetail", params={"taskId": task_id})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _log(user, job_id: str) -> str:
    return user.get(f"/api/v1/jobs/{job_id}/logs").text


PROBE = ("python -c \"import json, os, sys; print('ARGV', json.dumps(sys.argv[1:])); "
         "print('FILE', open(os.environ['MODELYARD_HPARAMS']).read()); print('OUT', os.environ['OUTPUT_DIR']); "
         "open('${output_dir}/done.txt', 'w').write('done')\"")


def test_hyperparameters_and_output_dir_reach_the_command(alice, settings, wait_state):
    (settings.users_root / alice.id / "Config").mkdir(parents=True, exist_ok=True)
    (settings.users_root / alice.id / "Config" / "mine.json").write_text(json.dumps(
        {"commonHyperParameters": [{"name": "lr", "value": "0.5"}, {"name": "from_profile", "value": "yes"}]}))
    body = {"name": "seed-cmd", "command": PROBE,
            "profilePath": "Config/mine.json",
            "commonHyperParameters": [{"name": "lr", "value": "0.01"}, {"name": "", "value": ""}],
            "fineTuneHyperParameters": [{"name": "epochs", "value": 3}, {"name": "note", "value": "two words; $HOME"}],
            "outputDir": "Out/run1", "checkPointDir": "Ckpt/run1",
            "type": "PyTorch", "createWay": "custom", "algorithmId": "algo-7", "storageMedium": "1201",
            "resource": [{"nodeType": "master", "numbers": 1, "cpuNumber": 1, "memory": 1}]}
    env = _create(alice, body)
    assert env["success"] is True, env
    task_id = env["data"]["taskId"]
    done = wait_state(alice, task_id, {"succeeded", "failed"})
    log = _log(alice, task_id)
    assert done["state"] == "succeeded", log
    argv = json.loads(next(x for x in log.splitlines() if x.startswith("ARGV "))[5:])
    # the request's lists override the profile name by name; values are passed verbatim, unexpanded
    assert argv == ["--lr=0.01", "--from_profile=yes", "--epochs=3", "--note=two words; $HOME"]
    hp_file = json.loads(log.split("FILE ", 1)[1].split("\nOUT ", 1)[0])
    assert hp_file == {"lr": "0.01", "from_profile": "yes", "epochs": "3", "note": "two words; $HOME"}
    out = settings.users_root / alice.id / "Out" / "run1"
    assert f"OUT {out}" in log
    assert (out / "done.txt").read_text() == "done"
    assert (settings.users_root / alice.id / "Ckpt" / "run1").is_dir()
    d = _detail(alice, task_id)
    assert d["type"] == "PyTorch" and d["createWay"] == "custom" and d["algorithmId"] == "algo-7"
    assert d["outputDir"] == "Out/run1"


def test_placeholders_and_their_env(alice, settings, submit_custom, wait_state):
    data = settings.users_root / alice.id / "Data" / "train"
    data.mkdir(parents=True, exist_ok=True)
    (data / "a.jsonl").write_text('{"text": "x"}\n')
    job = submit_custom(alice, "echo out=${output_dir} data=${data_dir} ckpt=${checkpoint_dir} "
                               "env=$OUTPUT_DIR,$DATA_DIR,$CHECKPOINT_DIR", input_type="local")
    done = wait_state(alice, job["id"], "succeeded")
    log = _log(alice, job["id"])
    spec = done["spec"]
    assert f"out={spec['output_dir']} data={spec['data']['dir']} ckpt={spec['checkpoint_dir']}" in log
    assert f"env={spec['output_dir']},{spec['data']['dir']},{spec['checkpoint_dir']}" in log
    # a placeholder naming what the job does not have is refused at submit
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "ls ${model_dir}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_placeholder"


@pytest.mark.parametrize("field,value,code", [
    ("outputDir", "../other-user", "invalid_path"),
    ("outputDir", "a\x00b", "invalid_path"),
    ("checkPointDir", "../../..", "invalid_path"),
    ("rdma", True, "unsupported_field"),
    ("storageMedium", "1203", "unsupported_field"),
    ("devices", "0,1", "unsupported_field"),
    ("resourceName", "rdma-pool", "unsupported_field"),
    ("zoneId", "no-such-zone", "resource_group_not_found"),
    ("nodeName", ["no-such-node"], "node_not_found"),
    ("llmTrainFramework", "TensorFlow", "unsupported_field"),
])
def test_fields_the_platform_cannot_honour_are_refused(alice, field, value, code):
    env = _create(alice, {"name": "x", "command": "true", field: value},
                  expect=404 if code.endswith("not_found") else 400)
    assert env["success"] is False and env["reason"] == code, env
    assert alice.get("/api/v1/jobs").json()["total"] == 0  # nothing queued


def test_outputdir_in_own_files_only(alice, bob, settings):
    (settings.users_root / bob.id / "Secret").mkdir(parents=True, exist_ok=True)
    env = _create(alice, {"name": "x", "command": "echo hi > ${output_dir}/x", "outputDir": f"../{bob.id}/Secret"},
                  expect=400)
    assert env["reason"] == "invalid_path"
    assert list((settings.users_root / bob.id / "Secret").iterdir()) == []


def test_urgent_and_high_priority_need_an_allowance(alice, admin):
    env = _create(alice, {"name": "x", "command": "true", "isUrgentTask": "1"}, expect=403)
    assert env["reason"] == "priority_not_allowed"
    env = _create(alice, {"name": "x", "command": "true", "priority": 500}, expect=403)
    assert env["reason"] == "priority_not_allowed"
    ok = _create(alice, {"name": "x", "command": "true", "priority": "high"})  # within the ceiling
    assert ok["success"] is True
    # an admin's own urgent task is fine, and an admin can grant the allowance by quota
    assert _create(admin, {"name": "x", "command": "true", "isUrgentTask": "1"})["success"] is True
    r = admin.put(f"/api/v1/quotas/{alice.id}", json={"max_priority": 1000, "can_urgent": True})
    assert r.status_code == 200, r.text
    assert _create(alice, {"name": "x", "command": "true", "isUrgentTask": "1", "priority": 500})["success"] is True


def test_search_id_must_be_the_callers_own(alice, bob, ctx_of):
    from modelyard.server.orm.searches import SearchModel

    with session_scope(ctx_of(bob).sessions) as s:
        search = SearchModel(owner_id=bob.id, name="bobs", algorithm="random", objective_metric="loss",
                             direction="minimize", max_trials=1, state="cancelled")
        s.add(search)
        s.flush()
        bobs_search = search.id
    for sid in (bobs_search, "0" * 32):
        r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "search_id": sid})
        assert r.status_code == 404 and r.json()["error"]["code"] == "search_not_found", r.text
    assert alice.get("/api/v1/jobs").json()["total"] == 0


def test_node_name_places_the_job(alice, admin, ctx_of, wait_state):
    nodes = admin.get("/api/v1/nodes").json()
    items = nodes["items"] if isinstance(nodes, dict) else nodes
    name = items[0]["name"]
    env = _create(alice, {"name": "placed", "command": "true", "nodeName": [name]})
    task_id = env["data"]["taskId"]
    wait_state(alice, task_id, "succeeded")
    with session_scope(ctx_of(alice).sessions, readonly=True) as s:
        allocs = s.scalars(select(AllocationModel).where(AllocationModel.consumer_id == task_id)).all()
    assert {a.node_id for a in allocs} == {items[0]["id"]}


MPI_PROBE = ("python -c \"import os, sys, torch, torch.distributed as d; d.init_process_group('gloo'); "
             "t = torch.tensor([float(d.get_rank() + 1)]); d.all_reduce(t); "
             "print('MPI', bool(os.environ.get('TORCHELASTIC_RUN_ID')), d.get_rank(), d.get_world_size(), "
             "t.item(), sys.argv[1:])\"")


@pytest.mark.timeout(180)
def test_mpi_command_runs_under_a_launcher_across_replicas(alice, wait_state):
    body = {"name": "mpi", "mpiCommand": MPI_PROBE, "commonHyperParameters": [{"name": "lr", "value": "0.1"}],
            "resource": [{"nodeType": "master", "numbers": 1, "cpuNumber": 1, "memory": 2},
                         {"nodeType": "worker", "numbers": 1, "cpuNumber": 1, "memory": 2}]}
    task_id = _create(alice, body)["data"]["taskId"]
    done = wait_state(alice, task_id, {"succeeded", "failed"}, timeout=150)
    logs = {r: alice.get(f"/api/v1/jobs/{task_id}/logs", params={"replica": r}).text
            for r in ("master-0", "worker-0")}
    assert done["state"] == "succeeded", (done["error"], logs)
    assert done["spec"]["command_source"] == "mpiCommand (torchrun launcher)"
    # both ranks joined one process group through the launcher's rendezvous: 1 + 2 summed on each
    assert "MPI True 0 2 3.0 ['--lr=0.1']" in logs["master-0"], logs["master-0"][-2000:]
    assert "MPI True 1 2 3.0 ['--lr=0.1']" in logs["worker-0"], logs["worker-0"][-2000:]
