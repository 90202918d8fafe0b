"""Hyperparameter searches (seed 002 ModelArts: bayes_opt, tpe, anneal; plus random and grid).

A search = a base job (a JobSubmit body) + a space (float / int / categorical, optionally log
scale) + an algorithm + an objective metric and direction + max trials + parallel trials + early
stopping. Every trial is a real job submitted through services.jobs.submit_job with the trial's
hyperparameters merged into the base; its output is registered as a model version like any
training job's (as versions of one model named after the search), and the best trial's version is
recorded on the search.

Optuna does the thinking. Its state is kept in our tables (orm/searches.py explains why) and an
in-memory study is rebuilt from them at every driver step:

    step(search):  ingest finished trial jobs  -> complete (objective value) / failed / cancelled
                   running trial jobs           -> intermediate values from job_metrics; the
                                                   pruner (MedianPruner) may stop them (job cancelled)
                   free parallel slots          -> study.ask() + submit_job, same transaction
                   all trials done              -> best trial, search succeeded / failed

The driver runs as a background component (SearchDriver, woken by every job state change) and
once synchronously at create, so a search whose first trial cannot be submitted is refused with
that error and nothing is left behind.

Algorithms -> samplers:
    random    RandomSampler
    grid      GridSampler (every parameter needs `values`, or an int range / a float step)
    tpe       TPESampler (gamma, n_initial_points -> n_startup_trials, constant liar for parallel trials)
    bayes_opt Optuna's GPSampler when scipy is installed; otherwise GPUCBSampler below, a small
              Gaussian-process sampler (RBF kernel, UCB / EI / PI acquisition with the seed's kind,
              kappa, xi) in numpy
    anneal    AnnealSampler below: hyperopt's annealing (pick one of the best trials, geometric in
              avg_best_idx, and sample around it in a window that shrinks as 1 / (1 + t * shrink_coef))
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, ModelyardError, NotFound
from modelyard.server.auth import Principal
from modelyard.server.db import advisory_lock, session_scope
from modelyard.server.orm import UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobMetricModel, JobModel
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.services import access, events

log = logging.getLogger(__name__)

ALGORITHMS = ("random", "grid", "tpe", "bayes_opt", "anneal")
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "random": {"seed": 1},
    "grid": {"seed": 1},
    "tpe": {"gamma": 0.25, "n_initial_points": 10, "seed": 1},
    "bayes_opt": {"kind": "ucb", "kappa": 2.5, "xi": 0.0, "n_initial_points": 3, "seed": 1},
    "anneal": {"avg_best_idx": 2.0, "shrink_coef": 0.1, "seed": 1},
}
ALGO_DESCRIPTIONS = {
    "random": "Random search over the space.",
    "grid": "Every combination of the given values, in random order.",
    "tpe": "Hyperparameter search using the tree-structured Parzen estimator algorithm.",
    "bayes_opt": "Hyperparameter search using Gaussian process.",
    "anneal": "Hyperparameter search using simulated annealing algorithm.",
}
EARLY_STOPPING_DEFAULTS = {"enabled": True, "n_startup_trials": 3, "n_warmup_steps": 0, "interval_steps": 1}
# objective name -> the key in the trainer's result metrics (modelyard_result.json)
RESULT_KEYS = {"loss": "train_loss", "train_loss": "train_loss", "eval_loss": "eval_loss"}
# objective name -> the series in job_metrics that carries its intermediate values
SERIES = {"train_loss": "loss"}


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --- custom samplers ---------------------------------------------------------------------------

def _encode(dist, value) -> list[float]:
    """A parameter value as coordinates in [0, 1] (one-hot for categoricals)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        out = [0.0] * len(dist.choices)
        out[dist.choices.index(value)] = 1.0
        return out
    lo, hi = float(dist.low), float(dist.high)
    if hi == lo:
        return [0.5]
    if dist.log:
        return [(math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))]
    return [(float(value) - lo) / (hi - lo)]


def _decode(dist, coords: np.ndarray):
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(np.argmax(coords))]
    u = float(np.clip(coords[0], 0.0, 1.0))
    lo, hi = float(dist.low), float(dist.high)
    v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if dist.log else lo + u * (hi - lo)
    step = getattr(dist, "step", None)
    if step:
        v = lo + round((v - lo) / step) * step
    v = min(max(v, lo), hi)
    return int(round(v)) if isinstance(dist, IntDistribution) else float(v)


def _width(dist) -> int:
    from optuna.distributions import CategoricalDistribution

    return len(dist.choices) if isinstance(dist, CategoricalDistribution) else 1


def _sign(study) -> float:
    """+1 when smaller is better."""
    from optuna.study import StudyDirection

    return 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0


def _make_gp_ucb_sampler(**kw):
    _optuna()
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.search_space import IntersectionSearchSpace
    from optuna.trial import TrialState

    class GPUCBSampler(BaseSampler):
        """Bayesian optimisation with a Gaussian process (what the seed's bayes_opt_search does):
        RBF kernel on the [0,1]-encoded space, kernel length scale and noise chosen by marginal
        likelihood over a small grid, acquisition (kind ucb / ei / poi) maximised over random and
        local candidates. Running trials enter as pending points at the posterior mean
        ("kriging believer"), so parallel trials spread out."""

        def __init__(self, kind: str = "ucb", kappa: float = 2.5, xi: float = 0.0, n_initial_points: int = 3,
                     seed: int | None = None, n_candidates: int = 2048):
            self.kind, self.kappa, self.xi = str(kind).lower(), float(kappa), float(xi)
            self.n_initial = max(1, int(n_initial_points))
            self.rng = np.random.default_rng(seed)
            self.n_candidates = n_candidates
            self._random = RandomSampler(seed=seed)
            self._space = IntersectionSearchSpace()

        def infer_relative_search_space(self, study, trial):
            return {k: d for k, d in self._space.calculate(study).items() if not d.single()}

        def sample_relative(self, study, trial, search_space):
            if not search_space:
                return {}
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if len(done) < self.n_initial:
                return {}
            names = sorted(search_space)
            dists = [search_space[n] for n in names]

            def enc(t) -> list[float]:
                return [c for n, d in zip(names, dists, strict=True) for c in _encode(d, t.params[n])]

            X = np.array([enc(t) for t in done], dtype=float)
            y = np.array([_sign(study) * t.value for t in done], dtype=float)  # minimise y
            mu_y, sd_y = float(y.mean()), float(y.std()) or 1.0
            yn = (y - mu_y) / sd_y
            ls, noise = self._fit(X, yn)
            pending = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if t.number != trial.number and all(n in t.params for n in names)]
            if pending:
                P = np.array([enc(t) for t in pending], dtype=float)
                mean_p, _ = self._posterior(X, yn, P, ls, noise)
                X, yn = np.vstack([X, P]), np.concatenate([yn, mean_p])
            cands = self._candidates(X[: len(done)][np.argsort(yn[: len(done)])[:3]], dists)
            mean, std = self._posterior(X, yn, cands, ls, noise)
            acq = self._acquisition(mean, std, float(yn[: len(done)].min()))
            best = cands[int(np.argmax(acq))]
            out, i = {}, 0
            for n, d in zip(names, dists, strict=True):
                w = _width(d)
                out[n] = _decode(d, best[i:i + w])
                i += w
            return out

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._random.sample_independent(study, trial, param_name, param_distribution)

        # --- the GP ---
        @staticmethod
        def _kernel(A, B, ls):
            d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
            return np.exp(-0.5 * d2 / ls**2)

        def _fit(self, X, y):
            best, best_ll = (0.3, 1e-2), -np.inf
            for ls in (0.05, 0.1, 0.2, 0.35, 0.6, 1.0, 2.0):
                for noise in (1e-4, 1e-2, 1e-1):
                    K = self._kernel(X, X, ls) + (noise + 1e-8) * np.eye(len(X))
                    try:
                        L = np.linalg.cholesky(K)
                    except np.linalg.LinAlgError:
                        continue
                    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
                    ll = -0.5 * y @ alpha - np.log(np.diag(L)).sum()
                    if ll > best_ll:
                        best, best_ll = (ls, noise), ll
            return best

        def _posterior(self, X, y, Xs, ls, noise):
            K = self._kernel(X, X, ls) + (noise + 1e-8) * np.eye(len(X))
            L = np.linalg.cholesky(K)
            Ks = self._kernel(X, Xs, ls)
            alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
            mean = Ks.T @ alpha
            v = np.linalg.solve(L, Ks)
            var = np.clip(1.0 - (v**2).sum(0), 1e-12, None)
            return mean, np.sqrt(var)

        def _acquisition(self, mean, std, y_best):
            if self.kind in ("ei", "poi", "pi"):
                from math import erf, sqrt

                z = (y_best - mean - self.xi) / std
                cdf = 0.5 * (1 + np.vectorize(erf)(z / sqrt(2)))
                if self.kind == "ei":
                    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
                    return (y_best - mean - self.xi) * cdf + std * pdf
                return cdf
            return -(mean - self.kappa * std)  # UCB on the maximised -y == LCB on y

        def _candidates(self, best_points, dists):
            n = self.n_candidates
            cols = []
            for d in dists:
                w = _width(d)
                if w == 1:
                    cols.append(self.rng.random((n, 1)))
                else:
                    cols.append(np.eye(w)[self.rng.integers(0, w, n)])
            cands = np.hstack(cols)
            # local perturbations of the best points found so far
            local = []
            for p in best_points:
                pert = p + self.rng.normal(0, 0.05, (n // 8, len(p)))
                local.append(np.clip(pert, 0, 1))
            if local:
                cands = np.vstack([cands] + local)
            return cands

    return GPUCBSampler(**kw)


def _make_anneal_sampler(**kw):
    _optuna()
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.search_space import IntersectionSearchSpace
    from optuna.trial import TrialState

    class AnnealSampler(BaseSampler):
        """hyperopt-style simulated annealing (the seed's anneal_search: avg_best_idx, shrink_coef).

        For each new trial: sort the finished trials best first, pick one at an index drawn from a
        geometric distribution with mean avg_best_idx, and sample every parameter around its value
        in a window that is the whole range at first and shrinks as 1 / (1 + t * shrink_coef) with
        the number of trials t. Categoricals keep the picked value with probability 1 - shrink."""

        def __init__(self, avg_best_idx: float = 2.0, shrink_coef: float = 0.1, seed: int | None = None):
            self.avg_best_idx = max(1.0, float(avg_best_idx))
            self.shrink_coef = max(0.0, float(shrink_coef))
            self.rng = np.random.default_rng(seed)
            self._random = RandomSampler(seed=seed)
            self._space = IntersectionSearchSpace()

        def infer_relative_search_space(self, study, trial):
            return {k: d for k, d in self._space.calculate(study).items() if not d.single()}

        def sample_relative(self, study, trial, search_space):
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            done = [t for t in done if _trial_value(t) is not None]
            if not search_space or not done:
                return {}
            done.sort(key=lambda t: _sign(study) * _trial_value(t))
            idx = min(int(self.rng.geometric(1.0 / self.avg_best_idx)) - 1, len(done) - 1)
            base = done[idx]
            t = len(study.get_trials(deepcopy=False))
            shrink = 1.0 / (1.0 + t * self.shrink_coef)
            out = {}
            for name, dist in search_space.items():
                if name not in base.params:
                    continue
                val = base.params[name]
                if isinstance(dist, CategoricalDistribution):
                    if self.rng.random() < shrink:
                        out[name] = dist.choices[int(self.rng.integers(len(dist.choices)))]
                    else:
                        out[name] = val
                    continue
                [u] = _encode(dist, val)
                lo, hi = max(0.0, u - shrink / 2), min(1.0, u + shrink / 2)
                v = _decode(dist, np.array([self.rng.uniform(lo, hi)]))
                out[name] = int(v) if isinstance(dist, IntDistribution) else v
            return out

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._random.sample_independent(study, trial, param_name, param_distribution)

    return AnnealSampler(**kw)


def _trial_value(t) -> float | None:
    if t.value is not None:
        return t.value
    if t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return None


def _scipy_available() -> bool:
    try:
        import scipy  # noqa: F401
    except ImportError:
        return False
    return True


def make_sampler(algorithm: str, params: dict[str, Any], space: list[dict], *, seed: int):
    """(sampler, description)."""
    optuna = _optuna()
    p = {**ALGO_DEFAULTS[algorithm], **params}
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed), "optuna RandomSampler"
    if algorithm == "grid":
        return optuna.samplers.GridSampler(grid_space(space), seed=seed), "optuna GridSampler"
    if algorithm == "tpe":
        gamma = float(p["gamma"])
        n0 = int(p["n_initial_points"])

        def gamma_fn(n: int) -> int:
            return min(int(math.ceil(gamma * n)), 25)

        kw: dict[str, Any] = {"seed": seed, "n_startup_trials": n0, "constant_liar": True, "multivariate": True}
        with warnings.catch_warnings():
            # optuna 4.9 deprecated `gamma` (removal planned for 6.0); the seed's tpe_search exposes it
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", getattr(optuna.exceptions, "ExperimentalWarning", Warning))
            sampler = optuna.samplers.TPESampler(gamma=gamma_fn, **kw)
        return (sampler,
                f"optuna TPESampler(gamma={gamma:g}, n_startup_trials={n0})")
    if algorithm == "bayes_opt":
        n0 = int(p["n_initial_points"])
        if _scipy_available() and str(p.get("kind", "ucb")).lower() == "ucb" and not params.get("kappa"):
            return (optuna.samplers.GPSampler(seed=seed, n_startup_trials=n0),
                    f"optuna GPSampler(n_startup_trials={n0})")
        return (_make_gp_ucb_sampler(kind=p["kind"], kappa=p["kappa"], xi=p["xi"], n_initial_points=n0, seed=seed),
                f"GP sampler (kind={p['kind']}, kappa={float(p['kappa']):g}, xi={float(p['xi']):g}, "
                f"n_initial_points={n0}; numpy, as scipy for optuna's GPSampler is not installed)")
    if algorithm == "anneal":
        return (_make_anneal_sampler(avg_best_idx=p["avg_best_idx"], shrink_coef=p["shrink_coef"], seed=seed),
                f"anneal sampler (avg_best_idx={float(p['avg_best_idx']):g}, "
                f"shrink_coef={float(p['shrink_coef']):g})")
    raise BadRequest(f"unknown algorithm {algorithm!r}", code="invalid_search")


def make_pruner(early: dict[str, Any]):
    optuna = _optuna()
    if not early.get("enabled", True):
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=int(early["n_startup_trials"]),
                                       n_warmup_steps=int(early["n_warmup_steps"]),
                                       interval_steps=int(early["interval_steps"]))


# --- validation of a request ---------------------------------------------------------------------

def normalize_algorithm(name: str) -> str:
    a = (name or "tpe").strip().lower().replace("-", "_")
    for suffix in ("_search",):
        if a.endswith(suffix):
            a = a[: -len(suffix)]
    a = {"bayes": "bayes_opt", "bayesian": "bayes_opt", "gp": "bayes_opt", "bo": "bayes_opt",
         "annealing": "anneal", "sa": "anneal", "simulated_annealing": "anneal"}.get(a, a)
    if a not in ALGORITHMS:
        raise BadRequest(f"algorithm {name!r} is not supported; use one of {', '.join(ALGORITHMS)}",
                         code="invalid_search", details={"valid": list(ALGORITHMS)})
    return a


def normalize_algorithm_params(algorithm: str, raw: Any) -> dict[str, Any]:
    """A dict, or the seed's [{"key","value","type"}] list; values typed like the defaults."""
    if raw in (None, "", [], {}):
        return {}
    items: dict[str, Any] = {}
    if isinstance(raw, list):
        for it in raw:
            if not isinstance(it, dict) or "key" not in it:
                raise BadRequest("algorithm_params entries need key and value", code="invalid_search")
            items[str(it["key"])] = it.get("value")
    elif isinstance(raw, dict):
        items = dict(raw)
    else:
        raise BadRequest("algorithm_params must be an object or a list of {key, value}", code="invalid_search")
    allowed = set(ALGO_DEFAULTS[algorithm]) | {"num_samples"}
    out: dict[str, Any] = {}
    for k, v in items.items():
        if k not in allowed:
            raise BadRequest(f"algorithm {algorithm} has no parameter {k!r} (valid: {', '.join(sorted(allowed))})",
                             code="invalid_search", details={"valid": sorted(allowed)})
        default = ALGO_DEFAULTS[algorithm].get(k, 0)
        try:
            if k in ("seed", "num_samples", "n_initial_points"):
                v = int(float(v))
                if v < (0 if k == "seed" else 1):
                    raise ValueError
            elif isinstance(default, float):
                v = float(v)
                if not math.isfinite(v) or v < 0:
                    raise ValueError
            else:
                v = str(v).lower()
                if k == "kind" and v not in ("ucb", "ei", "poi", "pi"):
                    raise ValueError
        except (TypeError, ValueError):
            raise BadRequest(f"invalid value {items[k]!r} for {algorithm} parameter {k}", code="invalid_search") from None
        if k == "gamma" and not 0 < v <= 1:
            raise BadRequest("gamma must be in (0, 1]", code="invalid_search")
        out[k] = v
    return out


def normalize_space(raw: Any, *, strategy: str | None, is_pretrain: bool) -> list[dict[str, Any]]:
    """[{"name","type","low","high","log","step"} | {"name","type":"categorical","choices"}], names
    canonical and every end of every range accepted by the hyperparameter table."""
    from modelyard.runtime import hparams as H

    if isinstance(raw, dict):
        raw = [{"name": k, **(v if isinstance(v, dict) else {"type": "categorical", "choices": v})}
               for k, v in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("space must list at least one parameter", code="invalid_search")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, p in enumerate(raw):
        if not isinstance(p, dict) or not p.get("name"):
            raise BadRequest(f"space[{i}] needs a name", code="invalid_search")
        hp = H.BY_NAME.get(str(p["name"]).strip())
        if hp is None:
            valid = H.valid_names(strategy or "LoRA", is_pretrain)
            raise BadRequest(f"space[{i}]: unknown hyperparameter {p['name']!r}; valid: {', '.join(valid)}",
                             code="invalid_hyperparameter", details={"valid": valid, "name": p["name"]})
        name = hp.name
        if name in seen:
            raise BadRequest(f"space: {name} given twice", code="invalid_search")
        seen.add(name)
        kind = str(p.get("type") or ("categorical" if "choices" in p or "values" in p else hp.type)).lower()
        kind = {"choice": "categorical", "discrete": "categorical", "integer": "int", "uniform": "float",
                "loguniform": "float", "real": "float"}.get(kind, kind)
        entry: dict[str, Any] = {"name": name, "type": kind}
        if kind == "categorical":
            choices = p.get("choices", p.get("values"))
            if not isinstance(choices, list) or not choices:
                raise BadRequest(f"space {name}: categorical needs a non-empty choices list", code="invalid_search")
            if any(not isinstance(c, str | int | float | bool) or c is None for c in choices):
                raise BadRequest(f"space {name}: choices must be strings, numbers or booleans", code="invalid_search")
            if len(set(map(repr, choices))) != len(choices):
                raise BadRequest(f"space {name}: duplicate choices", code="invalid_search")
            entry["choices"] = list(choices)
            probe = list(choices)
        elif kind in ("float", "int"):
            if "values" in p:
                raise BadRequest(f"space {name}: values go with type categorical", code="invalid_search")
            try:
                lo, hi = float(p["low"]), float(p["high"])
            except (KeyError, TypeError, ValueError):
                raise BadRequest(f"space {name}: {kind} needs numeric low and high", code="invalid_search") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise BadRequest(f"space {name}: low must be < high", code="invalid_search")
            log_ = bool(p.get("log", str(p.get("type", "")).lower() == "loguniform"))
            if log_ and lo <= 0:
                raise BadRequest(f"space {name}: a log scale needs low > 0", code="invalid_search")
            step = p.get("step")
            if step is not None:
                step = float(step)
                if step <= 0 or log_:
                    raise BadRequest(f"space {name}: step must be > 0 and cannot go with log", code="invalid_search")
            if kind == "int":
                if not (lo.is_integer() and hi.is_integer()) or (step is not None and not float(step).is_integer()):
                    raise BadRequest(f"space {name}: int bounds and step must be integers", code="invalid_search")
                lo, hi = int(lo), int(hi)
                step = int(step) if step is not None else None
            entry.update(low=lo, high=hi, log=log_)
            if step is not None:
                entry["step"] = step
            probe = [lo, hi]
        else:
            raise BadRequest(f"space {name}: type must be float, int or categorical", code="invalid_search")
        for v in probe:  # every end must be a value the trainer accepts
            blk = {name: v}
            H.validate(strategy, blk if not hp.lora_only else None, blk if hp.lora_only else None, is_pretrain,
                       with_defaults=False)
        out.append(entry)
    return out


def distribution(entry: dict[str, Any]):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if entry["type"] == "categorical":
        return CategoricalDistribution(entry["choices"])
    cls = IntDistribution if entry["type"] == "int" else FloatDistribution
    kw: dict[str, Any] = {"log": entry.get("log", False)}
    if entry.get("step") is not None:
        kw["step"] = entry["step"]
    elif cls is IntDistribution:
        kw["step"] = 1
    return cls(entry["low"], entry["high"], **kw)


def grid_space(space: list[dict]) -> dict[str, list]:
    grid: dict[str, list] = {}
    for e in space:
        if e["type"] == "categorical":
            grid[e["name"]] = list(e["choices"])
        elif e["type"] == "int" and not e.get("log"):
            step = e.get("step") or 1
            grid[e["name"]] = list(range(e["low"], e["high"] + 1, step))
        elif e.get("step"):
            n = int(math.floor((e["high"] - e["low"]) / e["step"] + 1e-9))
            grid[e["name"]] = [round(e["low"] + i * e["step"], 12) for i in range(n + 1)]
        else:
            raise BadRequest(f"grid search: {e['name']} needs choices (categorical), an int range or a float step",
                             code="invalid_search")
    return grid


def grid_size(space: list[dict]) -> int:
    n = 1
    for v in grid_space(space).values():
        n *= len(v)
    return n


# --- the trials' jobs ------------------------------------------------------------------------------

def _principal(session: Session, user_id: str) -> Principal:
    user = session.get(UserModel, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return Principal(user.id, user.name, user.role)


def _block(value: Any) -> dict[str, Any]:
    from modelyard.runtime.hparams import _items

    return dict(_items(value, "hyperparameters"))


def trial_body(search: SearchModel, params: dict[str, Any], number: int) -> dict[str, Any]:
    """The JobSubmit body of a trial: the base with the trial's hyperparameters put in."""
    from modelyard.runtime import hparams as H

    body = dict(search.base)
    common = _block(body.get("common_hyperparameters"))
    finetune = _block(body.get("finetune_hyperparameters"))
    for name, value in params.items():
        hp = H.BY_NAME[name]
        names = {hp.name, *hp.aliases}
        for blk in (common, finetune):
            for k in [k for k in blk if k in names]:
                del blk[k]
        (finetune if hp.lora_only else common)[name] = value
    body["common_hyperparameters"] = common
    body["finetune_hyperparameters"] = finetune
    body["name"] = f"{search.name}-trial-{number}"[:128]
    body["search_id"] = search.id
    body.setdefault("output_model_name", search.name)
    body["description"] = (f"trial {number} of search {search.name} ({search.id}): "
                           + ", ".join(f"{k}={v}" for k, v in params.items()))[:1024]
    return body


def _jobs():
    from modelyard.server.services import jobs

    return jobs


def _submit_trial(session: Session, ctx: Any, search: SearchModel, params: dict[str, Any], number: int) -> JobModel:
    from modelyard.server.schemas.jobs import JobSubmit

    body = trial_body(search, params, number)
    try:
        req = JobSubmit.model_validate(body)
    except Exception as exc:  # pydantic.ValidationError
        raise BadRequest(f"search base job is invalid: {exc}", code="invalid_search") from None
    return _jobs().submit_job(session, ctx, principal=_principal(session, search.owner_id), req=req, origin="search")


def per_trial_parts(search: SearchModel):
    from modelyard.server.schemas.jobs import JobSubmit

    jobs = _jobs()
    req = JobSubmit.model_validate({k: v for k, v in search.base.items() if k != "search_id"})
    return jobs.parts_for(jobs.normalize_roles(req.roles, req.kind))


def parallel_bound(session: Session, search: SearchModel, active_jobs: list[JobModel]) -> tuple[int, str]:
    """How many trials may be in flight: the requested parallelism, bounded by what the owner's
    remaining quota (job slots and resources, counting what this search's own running trials
    hold) can run at once. Never below 1, so a search always moves (its trial waits in the queue)."""
    from modelyard.server.scheduler import ledger

    per = ledger.Resources()
    for part in per_trial_parts(search):
        per = per + part.resources
    rem_res, rem_jobs = ledger.remaining(session, search.owner_id)
    holding = [j for j in active_jobs if j.state in ("starting", "running")]
    avail = rem_res
    for _ in holding:
        avail = avail + per
    slots = rem_jobs + len(holding)
    fit = slots
    for dim in ledger.DIMS:
        need = getattr(per, dim)
        if need > 0:
            fit = min(fit, int(math.floor(getattr(avail, dim) / need + 1e-9)))
    bound = max(1, min(search.parallel_trials, fit))
    why = "" if bound >= search.parallel_trials else (
        f"parallel trials limited to {bound} of {search.parallel_trials} by the remaining quota")
    return bound, why


# --- rebuilding the study ---------------------------------------------------------------------------

_OPTUNA_STATE = {"running": "RUNNING", "complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL",
                 "cancelled": "FAIL"}


def _frozen(trial: SearchTrialModel):
    optuna = _optuna()
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState

    state = getattr(TrialState, _OPTUNA_STATE[trial.state])
    inter = {int(k): float(v) for k, v in (trial.intermediate or {}).items()}
    value = trial.value if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(
        state=state, value=value, params=dict(trial.params),
        distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
        system_attrs=dict(trial.system_attrs or {}), intermediate_values=inter)


def build_study(search: SearchModel, trials: list[SearchTrialModel], *, with_sampler: bool = True):
    optuna = _optuna()
    # a fresh random stream at every step, still reproducible; the grid sampler's order of the grid
    # depends on its seed, so it keeps the search's
    seed = int(search.seed) + (0 if search.algorithm == "grid" else len(trials))
    sampler = make_sampler(search.algorithm, search.algorithm_params or {}, search.space, seed=seed)[0] \
        if with_sampler else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                pruner=make_pruner(search.early_stopping or {}), direction=search.direction)
    for t in sorted(trials, key=lambda t: t.number):
        study.add_trial(_frozen(t))
    return study


def _suggest(trial, entry: dict[str, Any]):
    if entry["type"] == "categorical":
        return trial.suggest_categorical(entry["name"], entry["choices"])
    if entry["type"] == "int":
        return trial.suggest_int(entry["name"], entry["low"], entry["high"], step=entry.get("step") or 1,
                                 log=entry.get("log", False))
    return trial.suggest_float(entry["name"], entry["low"], entry["high"], step=entry.get("step"),
                               log=entry.get("log", False))


# --- the driver step ---------------------------------------------------------------------------------

def _trials(session: Session, search_id: str) -> list[SearchTrialModel]:
    return list(session.scalars(select(SearchTrialModel).where(SearchTrialModel.search_id == search_id)
                                .order_by(SearchTrialModel.number)))


def _series_name(metric: str) -> str:
    return SERIES.get(metric, metric)


def _objective_of(session: Session, search: SearchModel, job: JobModel) -> float | None:
    metrics = (job.result or {}).get("metrics") or {}
    key = RESULT_KEYS.get(search.objective_metric, search.objective_metric)
    v = metrics.get(key, metrics.get(search.objective_metric))
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    row = session.execute(select(JobMetricModel.value).where(
        JobMetricModel.job_id == job.id, JobMetricModel.name == _series_name(search.objective_metric),
        JobMetricModel.attempt == job.attempt).order_by(JobMetricModel.step.desc(), JobMetricModel.id.desc())
        .limit(1)).scalar()
    return float(row) if row is not None else None


def _intermediate(session: Session, search: SearchModel, job: JobModel) -> dict[str, float]:
    rows = session.execute(select(JobMetricModel.step, JobMetricModel.value).where(
        JobMetricModel.job_id == job.id, JobMetricModel.name == _series_name(search.objective_metric),
        JobMetricModel.attempt == job.attempt).order_by(JobMetricModel.id)).all()
    out: dict[str, float] = {}
    for step, value in rows:
        if math.isfinite(value):
            out[str(int(step))] = float(value)
    return out


def _finish_trial(trial: SearchTrialModel, state: str, *, value: float | None = None, message: str = "") -> None:
    trial.state = state
    trial.value = value
    trial.finished_at = utcnow()
    if message:
        trial.message = message[:1024]


def step_search(session: Session, ctx: Any, search: SearchModel) -> bool:
    """One reconcile of a running search inside the caller's transaction. Returns True when
    something changed."""
    advisory_lock(session, f"search:{search.id}")
    session.refresh(search)
    if search.state != "running":
        return False
    changed = False
    trials = _trials(session, search.id)
    jobs_by_id = {j.id: j for j in session.scalars(select(JobModel).where(
        JobModel.id.in_([t.job_id for t in trials if t.job_id])))} if trials else {}
    jobs = _jobs()
    owner = _principal(session, search.owner_id)

    # 1. trials whose job finished
    for t in trials:
        if t.state != "running":
            continue
        job = jobs_by_id.get(t.job_id or "")
        if job is None:
            _finish_trial(t, "failed", message="its job disappeared")
            changed = True
        elif job.state == "succeeded":
            value = _objective_of(session, search, job)
            t.model_version_id = job.output_model_version_id
            t.intermediate = {**(t.intermediate or {}), **_intermediate(session, search, job)}
            if value is None:
                _finish_trial(t, "failed", message=f"the job reported no {search.objective_metric}")
            else:
                _finish_trial(t, "complete", value=value)
            changed = True
        elif job.state in ("failed", "cancelled"):
            _finish_trial(t, "failed" if job.state == "failed" else "cancelled",
                          message=(job.error or job.state)[:1024])
            changed = True

    # 2. early stopping of running trials from their intermediate values
    early = search.early_stopping or {}
    running = [t for t in trials if t.state == "running" and jobs_by_id.get(t.job_id or "") is not None
               and jobs_by_id[t.job_id].state == "running"]
    if running:
        updated = []
        for t in running:
            inter = _intermediate(session, search, jobs_by_id[t.job_id])
            if inter and inter != (t.intermediate or {}):
                t.intermediate = inter
                updated.append(t)
        if updated and early.get("enabled", True):
            study = build_study(search, trials, with_sampler=False)
            by_number = {ft.number: ft for ft in study.get_trials(deepcopy=False)}
            for t in updated:
                ft = by_number.get(t.number)
                if ft is None or not ft.intermediate_values:
                    continue
                if study.pruner.prune(study, ft):
                    step = max(ft.intermediate_values)
                    try:
                        jobs.cancel_job(session, ctx, principal=owner, job_id=t.job_id,
                                        reason=f"pruned by search {search.name} at step {step}")
                    except Conflict:
                        pass  # it finished meanwhile; the next step ingests it
                    else:
                        _finish_trial(t, "pruned", value=None,
                                      message=f"pruned at step {step}: {search.objective_metric}="
                                              f"{ft.intermediate_values[step]:.5g} worse than the median")
                        events.record(session, actor_id=None, kind="search.trial_pruned", object_type="search",
                                      object_id=search.id, message=f"trial {t.number} pruned at step {step}",
                                      data={"trial": t.number, "job_id": t.job_id, "step": step})
            changed = changed or bool(updated)

    # 3. new trials up to the parallel bound
    n_total = len(trials)
    limit = search.max_trials
    if search.algorithm == "grid":
        limit = min(limit, grid_size(search.space))
    active = [t for t in trials if t.state == "running"]
    if search.cancel_requested_at is None and n_total < limit:
        active_jobs = [jobs_by_id[t.job_id] for t in active if t.job_id in jobs_by_id]
        bound, why = parallel_bound(session, search, active_jobs)
        if bound != search.parallel_bound:
            search.parallel_bound = bound
            search.note = why
        free = min(bound - len(active), limit - n_total)
        if free > 0:
            from optuna.distributions import distribution_to_json

            study = build_study(search, trials)
            for _ in range(free):
                ot = study.ask()
                params = {e["name"]: _suggest(ot, e) for e in search.space}
                frozen = study._storage.get_trial(ot._trial_id)
                job = _submit_trial(session, ctx, search, params, ot.number)
                row = SearchTrialModel(search_id=search.id, number=ot.number, job_id=job.id, state="running",
                                       params=params,
                                       distributions={k: distribution_to_json(d) for k, d in frozen.distributions.items()},
                                       system_attrs=_jsonable(frozen.system_attrs))
                session.add(row)
                trials.append(row)
                n_total += 1
                changed = True
            session.flush()

    # 4. done?
    if n_total >= limit and all(t.state != "running" for t in trials):
        _complete(session, search, trials)
        changed = True
    if changed:
        _update_best(session, search, trials)
    return changed


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(attrs, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _best(search: SearchModel, trials: list[SearchTrialModel]) -> SearchTrialModel | None:
    done = [t for t in trials if t.state == "complete" and t.value is not None]
    if not done:
        return None
    sign = 1.0 if search.direction == "minimize" else -1.0
    return min(done, key=lambda t: (sign * t.value, t.number))


def _update_best(session: Session, search: SearchModel, trials: list[SearchTrialModel]) -> None:
    best = _best(search, trials)
    if best is None:
        return
    if best.id != search.best_trial_id:
        search.best_trial_id = best.id
        events.record(session, actor_id=None, kind="search.best_changed", object_type="search", object_id=search.id,
                      message=f"best: trial {best.number} {search.objective_metric}={best.value:.6g}",
                      data={"trial": best.number, "value": best.value, "params": best.params,
                            "model_version_id": best.model_version_id})
    search.best_value = best.value
    search.best_model_version_id = best.model_version_id


def _complete(session: Session, search: SearchModel, trials: list[SearchTrialModel]) -> None:
    best = _best(search, trials)
    search.finished_at = utcnow()
    if best is None:
        search.state = "failed"
        search.error = "no trial completed: " + "; ".join(
            f"trial {t.number} {t.state}: {t.message}" for t in trials[:5] if t.message)[:4000]
    else:
        search.state = "succeeded"
        _alias_best(session, search, best)
    events.record(session, actor_id=None, kind="search.finished", object_type="search", object_id=search.id,
                  message=f"search {search.state}", data={"state": search.state, "trials": len(trials),
                                                          "best_trial": best.number if best else None})


BEST_ALIAS = "best"


def _alias_best(session: Session, search: SearchModel, best: SearchTrialModel) -> None:
    """Point the alias `best` of the trials' model at the best trial's version, so
    "<model>:best" names it wherever a model reference is taken."""
    if not best.model_version_id:
        return
    try:
        from modelyard.server.orm.models import ModelVersionModel
        from modelyard.server.services import models

        v = session.get(ModelVersionModel, best.model_version_id)
        if v is None:
            return
        model = models.model_of(session, v)
        models.set_alias(session, _principal(session, search.owner_id), model, BEST_ALIAS, v.version)
        search.note = (f"{model.name}:{BEST_ALIAS} = version {v.version} (trial {best.number})")[:1024]
    except ModelyardError as exc:  # the model was changed meanwhile: the search still has best_model_version_id
        search.note = f"could not set alias {BEST_ALIAS}: {exc.message}"[:1024]


def step(ctx: Any, search_id: str) -> bool:
    """Drive one search in a transaction of its own. A permanent error (a trial job that can no
    longer be submitted) fails the search; its running trials are cancelled."""
    try:
        with session_scope(ctx.sessions) as session:
            search = session.get(SearchModel, search_id)
            if search is None:
                return False
            return step_search(session, ctx, search)
    except ModelyardError as exc:
        log.warning("search %s failed: %s", search_id, exc.message)
        with session_scope(ctx.sessions) as session:
            search = session.get(SearchModel, search_id)
            if search is not None and search.state == "running":
                _stop(session, ctx, search, state="failed", reason=f"submitting a trial failed: {exc.message}")
        return True


def step_all(ctx: Any) -> int:
    """One pass over every running search. Returns how many changed."""
    with session_scope(ctx.sessions, readonly=True) as session:
        ids = list(session.scalars(select(SearchModel.id).where(SearchModel.state == "running")
                                   .order_by(SearchModel.created_at)))
    n = 0
    for sid in ids:
        try:
            n += bool(step(ctx, sid))
        except Exception:  # noqa: BLE001 - one bad search must not stop the others
            log.exception("search %s: driver step failed", sid)
    return n


def _stop(session: Session, ctx: Any, search: SearchModel, *, state: str, reason: str,
          actor: Principal | None = None) -> None:
    owner = actor or _principal(session, search.owner_id)
    for t in _trials(session, search.id):
        if t.state != "running":
            continue
        if t.job_id:
            try:
                _jobs().cancel_job(session, ctx, principal=owner, job_id=t.job_id, reason=f"search {state}: {reason}")
            except (Conflict, NotFound):
                pass
        _finish_trial(t, "cancelled", message=reason)
    search.state = state
    search.finished_at = utcnow()
    search.cancel_requested_at = search.cancel_requested_at or utcnow()
    if state == "failed":
        search.error = reason[:4000]
    _update_best(session, search, _trials(session, search.id))
    events.record(session, actor_id=actor.id if actor else None, kind=f"search.{state}", object_type="search",
                  object_id=search.id, message=reason)


# --- API-facing operations --------------------------------------------------------------------------

def create_search(session: Session, ctx: Any, *, principal: Principal, req) -> SearchModel:
    """Validate, record and start a search (its first trials are submitted in this transaction)."""
    from modelyard.runtime import hparams as H
    from modelyard.server.schemas.jobs import JobSubmit

    base = dict(req.base or {})
    base.pop("search_id", None)
    base.pop("resume", None)
    try:
        base_req = JobSubmit.model_validate(base)
    except Exception as exc:
        raise BadRequest(f"base is not a valid job: {exc}", code="invalid_search") from None
    if base_req.kind not in ("finetune", "pretrain"):
        raise BadRequest("a search needs a training job (kind finetune or pretrain) as its base", code="invalid_search")
    is_pretrain = base_req.kind == "pretrain"
    strategy = H.normalize_strategy(base_req.strategy or (base_req.config or {}).get("fineTuneStrategy"), is_pretrain)
    algorithm = normalize_algorithm(req.algorithm)
    aparams = normalize_algorithm_params(algorithm, req.algorithm_params)
    space_raw = req.space_list() if hasattr(req, "space_list") else req.space
    space = normalize_space(space_raw, strategy=strategy, is_pretrain=is_pretrain)
    direction = (req.direction or "minimize").lower()
    if direction in ("min", "minimise"):
        direction = "minimize"
    if direction in ("max", "maximise"):
        direction = "maximize"
    if direction not in ("minimize", "maximize"):
        raise BadRequest("direction must be minimize or maximize", code="invalid_search")
    metric = (req.metric or "").strip()
    max_trials = req.max_trials or int(aparams.get("num_samples") or 10)
    if algorithm == "grid":
        n = grid_size(space)
        max_trials = min(max_trials, n) if req.max_trials else n
    early = {**EARLY_STOPPING_DEFAULTS}
    if isinstance(req.early_stopping, bool):
        early["enabled"] = req.early_stopping
    elif req.early_stopping:
        unknown = set(req.early_stopping) - set(EARLY_STOPPING_DEFAULTS)
        if unknown:
            raise BadRequest(f"early_stopping has no {sorted(unknown)} (valid: {sorted(EARLY_STOPPING_DEFAULTS)})",
                             code="invalid_search")
        early.update(req.early_stopping)
        for k in ("n_startup_trials", "n_warmup_steps", "interval_steps"):
            if int(early[k]) < (1 if k == "interval_steps" else 0):
                raise BadRequest(f"early_stopping.{k} is out of range", code="invalid_search")
    base["strategy"] = strategy if not is_pretrain else base.get("strategy")
    seed = req.seed if req.seed is not None else int(aparams.get("seed", 1))
    sampler_desc = make_sampler(algorithm, aparams, space, seed=seed)[1]
    search = SearchModel(owner_id=principal.id, name=req.name or f"search-{algorithm}", description=req.description,
                         state="running", algorithm=algorithm, algorithm_params=aparams, sampler=sampler_desc,
                         objective_metric=metric or "eval_loss", direction=direction, space=space, base=base,
                         max_trials=max_trials, parallel_trials=req.parallel_trials, early_stopping=early, seed=seed)
    session.add(search)
    session.flush()
    events.record(session, actor_id=principal.id, kind="search.created", object_type="search", object_id=search.id,
                  message=f"{algorithm} search {search.name}: {max_trials} trials, {req.parallel_trials} parallel",
                  data={"algorithm": algorithm, "space": space, "max_trials": max_trials})
    if not metric:
        # eval_loss when the data has a validate split, else the training loss
        probe = _submit_probe_data(session, ctx, principal, base_req)
        search.objective_metric = "eval_loss" if probe else "loss"
    step_search(session, ctx, search)  # the first trials, or the error that refuses the search
    return search


def _submit_probe_data(session: Session, ctx: Any, principal: Principal, req) -> bool:
    """Whether the base job's data has a validate split (read-only)."""
    try:
        _dv, data = _jobs().resolve_data(session, ctx.settings, principal, principal.id, input_type=req.input_type,
                                         dataset=req.dataset, input_dir=req.input_dir, required=True)
    except ModelyardError:
        return False  # the real submission reports it
    return bool(data and data.get("validate"))


def get_search(session: Session, principal: Principal, search_id: str) -> SearchModel:
    return access.get_visible(session, SearchModel, search_id, principal, what="search")


def list_searches(session: Session, principal: Principal, *, states: list[str] | None = None, page: int = 1,
                  page_size: int = 20) -> tuple[list[SearchModel], int]:
    stmt = access.visible(select(SearchModel), SearchModel, principal)
    if states:
        stmt = stmt.where(SearchModel.state.in_(states))
    return access.paginate(session, stmt.order_by(SearchModel.created_at.desc(), SearchModel.id.desc()),
                           page=page, page_size=page_size)


def cancel_search(session: Session, ctx: Any, *, principal: Principal, search_id: str) -> SearchModel:
    search = access.get_owned(session, SearchModel, search_id, principal, what="search")
    advisory_lock(session, f"search:{search.id}")
    session.refresh(search)
    if search.state != "running":
        raise Conflict(f"search {search.id} already {search.state}", code="search_finished")
    _stop(session, ctx, search, state="cancelled", reason="cancelled by user", actor=principal)
    return search


def trial_counts(session: Session, search_ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {sid: {} for sid in search_ids}
    if not search_ids:
        return out
    for sid, state, n in session.execute(select(SearchTrialModel.search_id, SearchTrialModel.state, func.count())
                                         .where(SearchTrialModel.search_id.in_(search_ids))
                                         .group_by(SearchTrialModel.search_id, SearchTrialModel.state)):
        out[sid][state] = int(n)
    return out


def summary(search: SearchModel, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": search.id, "name": search.name, "description": search.description, "owner_id": search.owner_id,
        "state": search.state, "algorithm": search.algorithm, "algorithm_params": search.algorithm_params,
        "sampler": search.sampler, "objective": {"metric": search.objective_metric, "direction": search.direction},
        "space": search.space, "max_trials": search.max_trials, "parallel_trials": search.parallel_trials,
        "parallel_bound": search.parallel_bound, "early_stopping": search.early_stopping, "seed": search.seed,
        "best_trial_id": search.best_trial_id, "best_value": search.best_value,
        "best_model_version_id": search.best_model_version_id, "note": search.note, "error": search.error,
        "trials": dict(counts or {}), "created_at": search.created_at, "updated_at": search.updated_at,
        "finished_at": search.finished_at,
    }


def detail(session: Session, search: SearchModel) -> dict[str, Any]:
    trials = _trials(session, search.id)
    jobs = {j.id: j for j in session.scalars(select(JobModel).where(
        JobModel.id.in_([t.job_id for t in trials if t.job_id])))} if trials else {}
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    out = summary(search, counts)
    out["base"] = search.base
    rows = []
    for t in trials:
        job = jobs.get(t.job_id or "")
        inter = t.intermediate or {}
        last = max(inter, key=int) if inter else None
        rows.append({"id": t.id, "number": t.number, "state": t.state, "params": t.params, "value": t.value,
                     "job_id": t.job_id, "job_state": job.state if job else None,
                     "model_version_id": t.model_version_id, "last_step": int(last) if last else None,
                     "last_intermediate": inter[last] if last else None, "intermediate": inter,
                     "message": t.message, "is_best": t.id == search.best_trial_id,
                     "created_at": t.created_at, "finished_at": t.finished_at})
    out["trials_detail"] = rows
    best = next((t for t in trials if t.id == search.best_trial_id), None)
    out["best"] = None if best is None else {
        "trial_id": best.id, "number": best.number, "params": best.params, "value": best.value,
        "job_id": best.job_id, "model_version_id": best.model_version_id}
    return out


def algorithms() -> dict[str, Any]:
    """The seed's search-algorithm listing (search_algo_count / search_algo_list)."""
    def typ(v):
        return "Integer" if isinstance(v, int) else "Float" if isinstance(v, float) else "String"

    items = []
    for a in ALGORITHMS:
        params = [{"key": k, "value": str(v), "type": typ(v)} for k, v in ALGO_DEFAULTS[a].items()]
        items.append({"name": f"{a}_search" if a in ("bayes_opt", "tpe", "anneal") else a, "params": params,
                      "description": ALGO_DESCRIPTIONS[a]})
    return {"search_algo_count": len(items), "search_algo_list": items}


# --- background component ------------------------------------------------------------------------

class SearchDriver:
    """Drives running searches: woken by every job state change (transitions.wake_all) and at
    least every settings.scheduler.poll_interval_s (metrics for early stopping arrive without a
    state change). Registered in server/background.py COMPONENTS."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        from modelyard.server.scheduler.transitions import add_waker

        add_waker(self.wake)
        self._thread = threading.Thread(target=self._run, name="modelyard-searches", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        from modelyard.server.scheduler.transitions import remove_waker

        self._stop.set()
        self.wake.set()
        remove_waker(self.wake)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        interval = max(0.2, float(self.ctx.settings.scheduler.poll_interval_s))
        while not self._stop.is_set():
            self.wake.clear()
            try:
                self.passes += 1
                step_all(self.ctx)
            except Exception:  # noqa: BLE001
                log.exception("search driver pass failed")
            self.wake.wait(interval)


def component(ctx: Any) -> SearchDriver:
    return SearchDriver(ctx)
