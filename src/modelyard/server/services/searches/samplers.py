"""Hyperparameter searches: the algorithms' samplers and pruner (Optuna's, plus the numpy GP
sampler and the anneal sampler described in services/searches.py), and the validation of a
request's algorithm, algorithm parameters and search space (and its Optuna distributions / grid).
Re-exported by services/searches.py.

Optuna (and scipy, which its GP sampler wants) are imported inside the functions that use them:
importing them takes about a second, and only a running search needs them, not every server start."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from modelyard.core.errors import BadRequest
from modelyard.runtime import hparams as H

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


def _optuna():
    import optuna  # lazy: see the module docstring

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
                z = (y_best - mean - self.xi) / std
                cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
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
