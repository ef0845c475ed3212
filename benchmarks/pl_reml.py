"""REML and pseudo-likelihood: timings against R, and whether PL starts help Laplace.

``python benchmarks/pl_reml.py [--reps N]`` writes ``benchmarks/results/pl_reml.json``:

* ``methods``: a fresh ``fitglme`` in a warm process (median over ``reps``) of
  ``sleepstudy`` REML (against ``lmer(REML = TRUE)``), ``cbpp`` MPL with ``dispersion_flag``
  (against ``MASS::glmmPQL``, which estimates the dispersion) and cbpp MPL / REMPL;
* ``init_pl``: Laplace and ApproximateLaplace fits of the reference cases (tests/reference_cases.py)
  started from the GLM fit (``init_pl_iterations=0``, the default) or from 3 or 10 MPL iterations
  (MATLAB starts from 10): median wall time of the whole ``fitglme``, BFGS iterations of the
  outer optimiser and the number of inner-mode evaluations in the fit (the PL iterations' pseudo-
  data LME evaluations included).

Every row records ``reps`` and ``statistic``; ``meta`` records the machine, its load average at the
start, and the versions. The machine's load matters: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _meta import meta  # noqa: E402
from reference_cases import case_spec  # noqa: E402

INIT_CASES = [
    "cbpp_binomial",
    "cbpp_binomial_approx",
    "cbpp_probit",
    "mfr_poisson_effects",
    "poisson_offset_interaction",
    "binary_slope",
    "grouseticks_nested_crossed",
]

R_CODE = r"""
suppressPackageStartupMessages({library(lme4); library(MASS)})
reps <- as.integer(commandArgs(TRUE)[1])
s <- read.csv("tests/reference/data/sleepstudy.csv")
cb <- read.csv("tests/reference/data/cbpp.csv"); cb$period <- factor(cb$period); cb$herd <- factor(cb$herd)
tm <- function(f) {
  f(); t <- numeric(reps)
  for (i in 1:reps) t[i] <- system.time(f())[["elapsed"]]
  median(t)
}
cat(tm(function() lmer(Reaction ~ Days + (Days | Subject), s, REML = TRUE)), "\n")
cat(tm(function() glmmPQL(incidence / size ~ period, random = ~ 1 | herd, family = binomial,
                          data = cb, weights = size, verbose = FALSE)), "\n")
"""


def _data(name: str):
    loader, formula, kwargs, _ = case_spec(name)
    data = loader()
    kwargs = dict(kwargs)
    if kwargs.get("offset") == "__log_exposure__":
        kwargs["offset"] = np.log(data["exposure"].to_numpy())
    return data, formula, kwargs


def _median_fit(ppl_glmm, data, formula, kwargs, reps: int):
    ppl_glmm.fitglme(data, formula, **kwargs)  # warm-up: compiled functions cached in the process
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        m = ppl_glmm.fitglme(data, formula, **kwargs)
        ts.append(time.perf_counter() - t0)
    return m, float(np.median(ts))


def method_timings(ppl_glmm, reps: int) -> list[dict]:
    rows = []
    sleep, _, _ = _data("sleepstudy_lmm")
    cbpp, cbpp_formula, cbpp_kw = _data("cbpp_binomial")
    for label, data, formula, kw in [
        ("sleepstudy REML", sleep, "Reaction ~ 1 + Days + (1 + Days|Subject)", {"fit_method": "reml"}),
        (
            "cbpp MPL dispersion_flag",
            cbpp,
            cbpp_formula,
            {**cbpp_kw, "fit_method": "mpl", "dispersion_flag": True},
        ),
        ("cbpp MPL", cbpp, cbpp_formula, {**cbpp_kw, "fit_method": "mpl"}),
        ("cbpp REMPL", cbpp, cbpp_formula, {**cbpp_kw, "fit_method": "rempl"}),
    ]:
        m, t = _median_fit(ppl_glmm, data, formula, kw, reps)
        rows.append(
            {
                "fit": label,
                "seconds": t,
                "reps": reps,
                "statistic": "median",
                "iterations": m.optimization.n_iterations,  # PL iterations; BFGS iterations for REML
            }
        )
    return rows


def r_timings(reps: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(
        ["Rscript", "-e", R_CODE, str(reps)], cwd=HERE.parent, capture_output=True, text=True, check=False
    )
    vals = out.stdout.split()
    if len(vals) != 2:
        return {"error": out.stderr[-500:]}
    return {
        "lmer REML sleepstudy": float(vals[0]),
        "glmmPQL cbpp": float(vals[1]),
        "reps": reps,
        "statistic": "median",
    }


def init_pl_rows(ppl_glmm, reps: int) -> list[dict]:
    from ppl_glmm.engine import laplace, reml

    calls = {"n": 0}
    real = {cls: cls._inner for cls in (laplace.LaplaceProblem, reml.LinearInner)}

    def counting(real_inner):
        def inner(self, *args, **kwargs):
            calls["n"] += 1
            return real_inner(self, *args, **kwargs)

        return inner

    rows = []
    for cls, fn in real.items():
        cls._inner = counting(fn)
    try:
        for name in INIT_CASES:
            data, formula, kw = _data(name)
            for k in (0, 3, 10):
                opts = {**kw, "init_pl_iterations": k} if k else kw
                m, t = _median_fit(ppl_glmm, data, formula, opts, reps)
                calls["n"] = 0
                ppl_glmm.fitglme(data, formula, **opts)
                rows.append(
                    {
                        "case": name,
                        "init_pl_iterations": k,
                        "seconds": t,
                        "reps": reps,
                        "statistic": "median",
                        "bfgs_iterations": m.optimization.n_iterations,
                        "outer_evaluations": m.optimization.n_evaluations,
                        "inner_evaluations_total": calls["n"],
                        "log_likelihood": m.log_likelihood,
                    }
                )
                print(
                    f"{name:28s} init_pl={k:2d} {t * 1e3:8.1f} ms  BFGS it {rows[-1]['bfgs_iterations']:3d}"
                    f"  inner evals {calls['n']:4d}  logLik {m.log_likelihood:.9f}",
                    flush=True,
                )
    finally:
        for cls, fn in real.items():
            cls._inner = fn
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import ppl_glmm

    result = {
        "meta": meta(f"python benchmarks/pl_reml.py --reps {args.reps}", with_r=True, extra_packages=())
    }
    result["methods"] = method_timings(ppl_glmm, args.reps)
    print(json.dumps(result["methods"], indent=1))
    result["r"] = r_timings(args.reps)
    print(result["r"])
    result["init_pl"] = init_pl_rows(ppl_glmm, args.reps)
    out = HERE / "results" / "pl_reml.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
