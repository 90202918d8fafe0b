"""Hyperparameter searches: validation, the driver's ask / prune / tell cycle for every algorithm
(trial jobs are real jobs; here their outcome is written by the test instead of a trainer), cancel,
the quota bound on parallel trials, the API, SDK and CLI.

The end-to-end search that really trains is in test_e2e.py."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from modelyard.core.enums import JobState
from modelyard.runtime import tiny
from modelyard.server.db import session_scope
from modelyard.server.orm.jobs import JobMetricModel, JobModel
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.services import searches as svc
from modelyard.server.services.jobs import transition
from tests.conftest import sdk_for as sdk


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny.build_model(tmp_path_factory.mktemp("tiny"))


def _ctx(user):
    return user.tc.app.state.ctx


@pytest.fixture
def trainer_user(alice, tiny_dir):
    """alice with a registered tiny model 'tiny' and chat data in Data/{train,validate}."""
    ctx = _ctx(alice)
    from modelyard.server.services import models

    with session_scope(ctx.sessions) as s:
        models.register_version(s, ctx.settings, owner_id=alice.id, model_name="tiny", source_dir=tiny_dir, source=3)
    root = ctx.settings.users_root / alice.id
    tiny.write_jsonl(root / "Data" / "train" / "train.jsonl", tiny.chat_rows(40))
    tiny.write_jsonl(root / "Data" / "validate" / "validate.jsonl", tiny.chat_rows(8, seed=1))
    return alice


BASE = {"kind": "finetune", "model": "tiny", "input_type": "local", "strategy": "LoRA",
        "roles": [{"role": "master", "replicas": 1, "cpu": 1, "memory_mib": 512}],
        "common_hyperparameters": {"max_steps": "4", "save_strategy": "no"}}
SPACE = [{"name": "learning_rate", "type": "float", "low": 1e-5, "high": 1e-1, "log": True},
         {"name": "lora_r", "type": "categorical", "choices": [4, 8, 16]}]


def objective(params: dict) -> float:
    """A synthetic loss: best at learning_rate 1e-3, slightly better with a bigger rank."""
    return (math.log10(params["learning_rate"]) + 3) ** 2 + 1.0 / params["lora_r"]


def _create(user, **kw):
    body = {"name": "s1", "base": BASE, "space": SPACE, "algorithm": "tpe", "max_trials": 4, "parallel_trials": 2,
            **kw}
    return user.post("/api/v1/searches", json=body)


def _finish_job(ctx, job_id: str, *, value: float | None, state: str = "succeeded", curve: list[float] | None = None):
    """Play the trainer: metrics rows, result, final state."""
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, job_id)
        if job.state == "queued":
            transition(s, job, JobState.starting)
        if job.state == "starting":
            transition(s, job, JobState.running)
        for i, v in enumerate(curve or []):
            s.add(JobMetricModel(job_id=job_id, attempt=job.attempt, step=i + 1, name="eval_loss", value=v, ts=0.0))
        if state == "running":
            return
        if state == "succeeded":
            job.result = {"format": "peft", "global_step": 4, "metrics": {"eval_loss": value, "train_loss": value}}
        transition(s, job, JobState(state), reason="test")


def _trials(ctx, search_id):
    with session_scope(ctx.sessions, readonly=True) as s:
        return list(s.scalars(select(SearchTrialModel).where(SearchTrialModel.search_id == search_id)
                              .order_by(SearchTrialModel.number)))


def _run_to_end(ctx, search_id, fn=objective, limit=100):
    for _ in range(limit):
        with session_scope(ctx.sessions, readonly=True) as s:
            search = s.get(SearchModel, search_id)
            if search.state != "running":
                return search
        for t in _trials(ctx, search_id):
            if t.state == "running":
                _finish_job(ctx, t.job_id, value=fn(t.params))
        svc.step(ctx, search_id)
    raise AssertionError("search did not end")


def test_create_submits_trial_jobs_and_tpe_runs_to_the_best(trainer_user):
    ctx = _ctx(trainer_user)
    resp = _create(trainer_user, max_trials=12, algorithm_params={"n_initial_points": 4}, early_stopping=False)
    assert resp.status_code == 201, resp.text
    s = resp.json()
    assert s["state"] == "running" and s["objective"] == {"metric": "eval_loss", "direction": "minimize"}
    assert "TPESampler" in s["sampler"] and s["parallel_bound"] == 2
    assert len(s["trials_detail"]) == 2  # the first trials were submitted with the create
    jobs = trainer_user.get("/api/v1/jobs", params={"page_size": 50}).json()["items"]
    assert len(jobs) == 2 and all(j["state"] == "queued" and j["origin"] == "search" for j in jobs)
    job = trainer_user.get(f"/api/v1/jobs/{s['trials_detail'][0]['job_id']}").json()
    hp = job["spec"]["training"]["hyperparameters"]
    t0 = s["trials_detail"][0]["params"]
    assert hp["learning_rate"] == pytest.approx(t0["learning_rate"]) and hp["lora_r"] == t0["lora_r"]
    assert hp["max_steps"] == 4 and job["spec"]["search_id"] == s["id"]

    svc.step(ctx, s["id"])  # nothing finished: no new trial beyond the parallel bound
    assert len(_trials(ctx, s["id"])) == 2
    final = _run_to_end(ctx, s["id"])
    assert final.state == "succeeded"
    trials = _trials(ctx, s["id"])
    assert len(trials) == 12 and all(t.state == "complete" for t in trials)
    best = min(trials, key=lambda t: t.value)
    assert final.best_trial_id == best.id and final.best_value == pytest.approx(best.value)
    # TPE beats the random start-up trials
    assert best.value <= min(t.value for t in trials[:4])
    d = trainer_user.get(f"/api/v1/searches/{s['id']}").json()
    assert d["best"]["number"] == best.number and d["trials"] == {"complete": 12}
    assert sum(t["is_best"] for t in d["trials_detail"]) == 1


@pytest.mark.parametrize("algorithm,params", [
    ("random", {}),
    ("bayes_opt", {"kind": "ucb", "kappa": 2.5, "n_initial_points": 3}),
    ("bayes_opt", {"kind": "ei", "xi": 0.01}),
    ("anneal", {"avg_best_idx": 2.0, "shrink_coef": 0.1}),
])
def test_other_algorithms_search_the_space(trainer_user, algorithm, params):
    ctx = _ctx(trainer_user)
    resp = _create(trainer_user, algorithm=algorithm, algorithm_params=params, max_trials=10, parallel_trials=3,
                   early_stopping=False, seed=3)
    assert resp.status_code == 201, resp.text
    final = _run_to_end(ctx, resp.json()["id"])
    assert final.state == "succeeded"
    trials = _trials(ctx, final.id)
    assert len(trials) == 10
    for t in trials:
        assert 1e-5 <= t.params["learning_rate"] <= 1e-1 and t.params["lora_r"] in (4, 8, 16)
    assert len({round(t.params["learning_rate"], 12) for t in trials}) >= 8  # it explores
    if algorithm != "random":
        assert final.best_value < 1.0, [(t.params, t.value) for t in trials]


def test_seed_algorithm_names_and_listing(trainer_user):
    resp = _create(trainer_user, algorithm="anneal_search",
                   algorithm_params=[{"key": "avg_best_idx", "value": "2.0", "type": "Float"},
                                     {"key": "shrink_coef", "value": "0.1", "type": "Float"},
                                     {"key": "num_samples", "value": "5", "type": "Integer"}],
                   max_trials=None)
    assert resp.status_code == 201, resp.text
    assert resp.json()["algorithm"] == "anneal" and resp.json()["max_trials"] == 5
    lst = trainer_user.get("/api/v1/searches/algorithms").json()
    names = {a["name"] for a in lst["search_algo_list"]}
    assert {"bayes_opt_search", "tpe_search", "anneal_search", "random", "grid"} <= names
    assert lst["search_algo_count"] == len(lst["search_algo_list"])


def test_grid_enumerates_every_combination(trainer_user):
    ctx = _ctx(trainer_user)
    space = [{"name": "learning_rate", "type": "categorical", "choices": [1e-4, 1e-3, 1e-2]},
             {"name": "lora_r", "type": "int", "low": 4, "high": 8, "step": 4}]
    resp = _create(trainer_user, algorithm="grid", space=space, max_trials=None, parallel_trials=4)
    assert resp.status_code == 201, resp.text
    assert resp.json()["max_trials"] == 6
    final = _run_to_end(ctx, resp.json()["id"])
    combos = {(t.params["learning_rate"], t.params["lora_r"]) for t in _trials(ctx, final.id)}
    assert combos == {(lr, r) for lr in (1e-4, 1e-3, 1e-2) for r in (4, 8)}
    assert final.state == "succeeded"
    best = next(t for t in _trials(ctx, final.id) if t.id == final.best_trial_id)
    assert best.params == {"learning_rate": 1e-3, "lora_r": 8}


def test_median_pruner_cancels_a_bad_running_trial(trainer_user):
    ctx = _ctx(trainer_user)
    resp = _create(trainer_user, algorithm="random", max_trials=4, parallel_trials=1,
                   early_stopping={"n_startup_trials": 2, "n_warmup_steps": 1})
    sid = resp.json()["id"]
    good = [3.0, 2.0, 1.5, 1.2]
    for _ in range(2):  # two complete trials with a good curve
        [t] = [t for t in _trials(ctx, sid) if t.state == "running"]
        _finish_job(ctx, t.job_id, value=1.2, curve=good)
        svc.step(ctx, sid)
    [t3] = [t for t in _trials(ctx, sid) if t.state == "running"]
    _finish_job(ctx, t3.job_id, value=None, state="running", curve=[3.5, 3.4, 3.3])  # worse than the median
    svc.step(ctx, sid)
    t3 = next(t for t in _trials(ctx, sid) if t.number == t3.number)
    assert t3.state == "pruned" and "pruned at step" in t3.message
    with session_scope(ctx.sessions, readonly=True) as s:
        assert s.get(JobModel, t3.job_id).cancel_requested_at is not None
    # the 4th trial was submitted in the same step
    assert len(_trials(ctx, sid)) == 4


def test_failed_trials_and_a_search_with_no_success(trainer_user):
    ctx = _ctx(trainer_user)
    sid = _create(trainer_user, algorithm="random", max_trials=2, parallel_trials=2).json()["id"]
    for t in _trials(ctx, sid):
        _finish_job(ctx, t.job_id, value=None, state="failed")
    svc.step(ctx, sid)
    d = trainer_user.get(f"/api/v1/searches/{sid}").json()
    assert d["state"] == "failed" and "no trial completed" in d["error"] and d["trials"] == {"failed": 2}


def test_cancel_cancels_unfinished_trial_jobs(trainer_user, bob):
    ctx = _ctx(trainer_user)
    sid = _create(trainer_user, max_trials=5, parallel_trials=2).json()["id"]
    assert bob.post(f"/api/v1/searches/{sid}/cancel").status_code == 404  # not bob's
    r = trainer_user.post(f"/api/v1/searches/{sid}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert {t["state"] for t in r.json()["trials_detail"]} == {"cancelled"}
    jobs = trainer_user.get("/api/v1/jobs").json()["items"]
    assert {j["state"] for j in jobs} == {"cancelled"}
    assert trainer_user.post(f"/api/v1/searches/{sid}/cancel").status_code == 409
    svc.step(ctx, sid)
    assert len(_trials(ctx, sid)) == 2  # nothing new after a cancel
    assert [s["id"] for s in trainer_user.get("/api/v1/searches").json()["items"]] == [sid]
    assert bob.get("/api/v1/searches").json()["total"] == 0
    assert bob.get(f"/api/v1/searches/{sid}").status_code == 404


def test_parallel_trials_bounded_by_the_quota(trainer_user, admin):
    sdk(admin).quota.set(trainer_user.name, jobs=2)
    resp = _create(trainer_user, max_trials=6, parallel_trials=5)
    assert resp.status_code == 201, resp.text
    s = resp.json()
    assert s["parallel_bound"] == 2 and "quota" in s["note"] and len(s["trials_detail"]) == 2


@pytest.mark.parametrize("patch,code", [
    ({"space": [{"name": "no_such_hp", "type": "float", "low": 0, "high": 1}]}, "invalid_hyperparameter"),
    ({"space": [{"name": "lora_r", "type": "int", "low": -1, "high": 8}]}, "invalid_hyperparameter"),
    ({"space": [{"name": "learning_rate", "type": "float", "low": 0, "high": 1, "log": True}]}, "invalid_search"),
    ({"space": [{"name": "learning_rate", "type": "float", "low": 1, "high": 0.1}]}, "invalid_search"),
    ({"algorithm": "hill_climbing"}, "invalid_search"),
    ({"algorithm_params": {"gamma": 7}}, "invalid_search"),
    ({"algorithm_params": {"nonsense": 1}}, "invalid_search"),
    ({"algorithm": "grid"}, "invalid_search"),  # a continuous dimension cannot be gridded
    ({"direction": "sideways"}, "invalid_search"),
    ({"base": {**BASE, "kind": "custom", "command": "true"}}, "invalid_search"),
    ({"base": {**BASE, "model": "no-such-model"}}, "not_found"),
    ({"base": {**BASE, "common_hyperparameters": {"bogus": "1"}}}, "invalid_hyperparameter"),
    ({"base": {**BASE, "strategy": "FineTune"}}, "invalid_hyperparameter"),  # lora_r in the space
])
def test_refused_bodies_leave_nothing_behind(trainer_user, patch, code):
    resp = _create(trainer_user, **patch)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["error"]["code"] == code, resp.text
    assert trainer_user.get("/api/v1/searches").json()["total"] == 0
    assert trainer_user.get("/api/v1/jobs").json()["total"] == 0


def test_sdk_and_cli(trainer_user, monkeypatch):
    from typer.testing import CliRunner

    from modelyard.cli.main import app

    c = sdk(trainer_user)
    s = c.searches.create(BASE, SPACE, algorithm="random", max_trials=2, name="via-sdk")
    assert s["name"] == "via-sdk" and c.searches.get(s["id"])["id"] == s["id"]
    assert c.searches.list()["total"] == 1
    monkeypatch.setattr("modelyard.cli.searches.client", lambda: c)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    out = runner.invoke(app, ["search", "ls"])
    assert out.exit_code == 0 and "via-sdk" in out.output, out.output
    out = runner.invoke(app, ["search", "show", s["id"]])
    assert out.exit_code == 0 and "learning_rate" in out.output, out.output
    out = runner.invoke(app, ["search", "create", "--model", "tiny", "-p", "learning_rate=float:1e-4..1e-2:log",
                              "-p", "lora_r=4,8", "--hp", "max_steps=3", "--algorithm", "tpe", "--max-trials", "2",
                              "--name", "via-cli", "--cpu", "1", "--memory", "512MiB"])
    assert out.exit_code == 0, out.output
    created = [x for x in c.searches.list()["items"] if x["name"] == "via-cli"][0]
    assert created["space"][1] == {"name": "lora_r", "type": "categorical", "choices": [4, 8]}
    out = runner.invoke(app, ["search", "cancel", created["id"]])
    assert out.exit_code == 0 and "cancelled" in out.output
    out = runner.invoke(app, ["search", "algorithms"])
    assert out.exit_code == 0 and "tpe\t" in out.output and "tpe_search" not in out.output  # what --algorithm takes
