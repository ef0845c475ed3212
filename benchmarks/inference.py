"""Issue 9 benchmark: inference on a fitted model against lme4, same machine, same run.

* ``profile``: ``covariance_parameters(method='profile')`` against ``confint(m, parm = 'theta_',
  method = 'profile')`` (the covariance parameters' profile intervals; lme4 profiles every
  covariance parameter, as ppl_glmm does, and sigma for lmer).
* ``random_effects``: ``random_effects()`` (conditional modes with SEPred, which includes beta's
  uncertainty) against ``ranef(m, condVar = TRUE)``.
* ``compare``: ``m0.compare(m)`` against ``anova(m0, m)`` (both models already fitted).

Each ppl_glmm row is the median of ``--reps`` first calls, each on a new model object over the
fitted model's workspace and result (as ``refit`` returns: the joint covariance is cached on an
object after its first use, so re-using one object would time a cache hit); models are fitted
before timing, as in R. Writes ``benchmarks/results/inference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "reference" / "data"


def _data(name: str) -> pd.DataFrame:
    d = pd.read_csv(DATA / name)
    if name == "cbpp.csv":
        d["herd"] = d["herd"].astype(str)
        d["period"] = d["period"].astype(str)
    if name == "mfr.csv":
        d["supplier"] = pd.Categorical(d["supplier"], categories=["C", "B", "A"])
    return d


MFR = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"
# name -> (data, big formula, small formula, fitglme keyword arguments)
CASES: dict[str, tuple] = {
    "sleepstudy_ml": (
        "sleepstudy.csv",
        "Reaction ~ Days + (Days|Subject)",
        "Reaction ~ Days + (1|Subject)",
        {},
    ),
    "cbpp_binomial": (
        "cbpp.csv",
        "incidence ~ period + (1|herd)",
        "incidence ~ 1 + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size"},
    ),
    "mfr_poisson": (
        "mfr.csv",
        MFR,
        MFR.replace(" + supplier", ""),
        {"distribution": "poisson", "dummy_var_coding": "effects"},
    ),
}


def _median_time(make, call, reps: int) -> dict:
    call(make())  # warm-up: loads or compiles what the call needs
    ts = []
    for _ in range(reps):
        obj = make()
        t = time.perf_counter()
        call(obj)
        ts.append(time.perf_counter() - t)
    return {"median": float(np.median(ts)), "min": float(np.min(ts)), "reps": reps}


def python_timings(reps: int) -> dict:
    import ppl_glmm
    from ppl_glmm.model import GeneralizedLinearMixedModel

    out = {}
    for name, (file, big, small, kw) in CASES.items():
        data = _data(file)
        m = ppl_glmm.fitglme(data, big, **kw)
        m0 = ppl_glmm.fitglme(data, small, **kw)
        fresh = lambda m=m: GeneralizedLinearMixedModel(m._ws, m._result, m._settings)  # noqa: E731
        out[name] = {
            "profile": _median_time(fresh, lambda g: g.covariance_parameters(method="profile"), reps),
            "random_effects": _median_time(fresh, lambda g: g.random_effects(), reps),
            "compare": _median_time(lambda m0=m0: m0, lambda g, m=m: g.compare(m), reps),
        }
        print(f"  ppl_glmm {name}: profile {out[name]['profile']['median']:.3f} s", flush=True)
    return out


def r_timings(reps: int) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: install r-cran-lme4 r-cran-jsonlite", file=sys.stderr)
        return None
    tmp = ROOT / "benchmarks" / "results" / "inference_r.json"
    subprocess.run([rscript, "benchmarks/inference_bench.R", str(reps), str(tmp)], cwd=ROOT, check=True)
    r = json.loads(tmp.read_text())
    tmp.unlink()
    return r


R_KEYS = {"profile": "profile", "random_effects": "ranef_condvar", "compare": "anova"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "5")))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    info = meta(
        f"python benchmarks/inference.py --reps {args.reps}", with_r=shutil.which("Rscript") is not None
    )
    py = python_timings(args.reps)
    r = r_timings(args.reps)
    rows = []
    for name in CASES:
        for what, rk in R_KEYS.items():
            theirs = r["results"][name][rk]["median"] if r else None
            ours = py[name][what]["median"]
            rows.append(
                {
                    "case": name,
                    "method": what,
                    "ppl_glmm": ours,
                    "lme4": theirs,
                    "ratio": ours / theirs if theirs else None,
                    "reps": args.reps,
                    "statistic": "median",
                }
            )
    result = {"meta": info, "ppl_glmm": py, "lme4": r, "rows": rows}
    print(f"\n{'case':16s} {'method':16s} {'ppl_glmm (s)':>12s} {'lme4 (s)':>10s} {'ratio':>7s}")
    for row in rows:
        lme = f"{row['lme4']:.4f}" if row["lme4"] else "-"
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        print(f"{row['case']:16s} {row['method']:16s} {row['ppl_glmm']:12.4f} {lme:>10s} {ratio:>7s}")
    out = ROOT / "benchmarks" / "results" / "inference.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
