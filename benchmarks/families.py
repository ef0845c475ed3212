"""Issue 7 benchmarks: the new families and fit methods against glmmTMB, glmer, lmer and glmmPQL
(``nox -s bench`` runs it after ``run.py``; both need R for the ratios).

Every ppl_glmm row is the median over ``--reps`` fits in a warm process (after one warm-up fit of the
same model, so compiled functions are loaded: the same footing as R after its warm-up fit). The R
rows come from ``benchmarks/families_bench.R`` in the same run (median of ``--reps`` after a
warm-up), called for each case right after its own fit is timed, so that both sides of a ratio
meet the same load (``ratio_min``, the ratio of the fastest fits, is recorded too). On both sides
a fit whose first timed run took under 0.5 s is timed at least 25 times: a median of 5 fits of
20-100 ms moves with the machine's load by tens of percent. The core families' ratio (the mfr
Poisson warm fit against glmer, ``run.py``) is measured in the same run too, since the issue's
target is "no slower than the core families' ratios".

Writes ``benchmarks/results/families.json`` and prints the table.
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


def _cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    d["herd"] = d["herd"].astype(str)
    d["period"] = d["period"].astype(str)
    return d


# name -> (data loader, formula, fitglme keyword arguments, the R rows it is compared with)
CASES: dict[str, tuple] = {
    "gamma_log": (
        lambda: pd.read_csv(DATA / "gamma_log.csv"),
        "y ~ x + (1|g)",
        {"distribution": "gamma", "link": "log"},
        ("glmmTMB_gamma_log", "glmer_gamma_log"),
    ),
    "gamma_large": (
        lambda: pd.read_csv(DATA / "gamma_large.csv"),
        "y ~ x + (1|g)",
        {"distribution": "gamma", "link": "log"},
        ("glmmTMB_gamma_large", "glmer_gamma_large"),
    ),
    "nb_single": (
        lambda: pd.read_csv(DATA / "nb_single.csv"),
        "y ~ x + (1|g)",
        {"distribution": "negative_binomial"},
        ("glmmTMB_nbinom2_nb_single", "glmer_nb_nb_single"),
    ),
    "nb_large": (
        lambda: pd.read_csv(DATA / "nb_large.csv"),
        "y ~ x + (1|g)",
        {"distribution": "negative_binomial"},
        ("glmmTMB_nbinom2_nb_large", "glmer_nb_nb_large"),
    ),
    "agq_poisson_nagq25": (
        lambda: pd.read_csv(DATA / "agq_poisson.csv"),
        "y ~ x + (1|g)",
        {"distribution": "poisson", "fit_method": "quadrature", "n_agq": 25},
        ("glmer_nAGQ25_agq_poisson",),
    ),
    "agq_large_nagq9": (
        lambda: pd.read_csv(DATA / "agq_large.csv"),
        "y ~ x + (1|g)",
        {"distribution": "binomial", "fit_method": "quadrature", "n_agq": 9},
        ("glmer_nAGQ9_agq_large",),
    ),
    "agq_large_nagq25": (
        lambda: pd.read_csv(DATA / "agq_large.csv"),
        "y ~ x + (1|g)",
        {"distribution": "binomial", "fit_method": "quadrature", "n_agq": 25},
        ("glmer_nAGQ25_agq_large",),
    ),
    "cbpp_nagq9": (
        _cbpp,
        "incidence ~ period + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size", "fit_method": "quadrature", "n_agq": 9},
        ("glmer_nAGQ9_cbpp",),
    ),
    "sleepstudy_reml": (
        lambda: pd.read_csv(DATA / "sleepstudy.csv").astype({"Subject": str}),
        "Reaction ~ 1 + Days + (1 + Days|Subject)",
        {"fit_method": "reml"},
        ("lmer_reml_sleepstudy",),
    ),
    "cbpp_mpl": (
        _cbpp,
        "incidence ~ period + (1|herd)",
        {"distribution": "binomial", "binomial_size": "size", "fit_method": "mpl", "dispersion_flag": True},
        ("glmmPQL_cbpp",),
    ),
}


SMALL_FIT, SMALL_REPS = 0.5, 25  # a fit under SMALL_FIT s is timed at least SMALL_REPS times (as in R)


def python_timings(reps: int, names: list[str] | None = None) -> dict:
    import ppl_glmm

    out = {}
    for name, (load, formula, kw, _) in CASES.items():
        if names is not None and name not in names:
            continue
        data = load()
        ppl_glmm.fitglme(data, formula, **kw)  # warm-up: compiles or loads the family's functions
        ts: list[float] = []
        n = reps
        while len(ts) < n:
            t = time.perf_counter()
            ppl_glmm.fitglme(data, formula, **kw)
            ts.append(time.perf_counter() - t)
            if len(ts) == 1 and ts[0] < SMALL_FIT:
                n = max(reps, SMALL_REPS)
        out[name] = {"median": float(np.median(ts)), "min": float(np.min(ts)), "reps": n}
        print(f"  ppl_glmm {name}: {out[name]['median']:.4f} s", flush=True)
    return out


def r_timings(reps: int, names: tuple[str, ...] = ()) -> dict | None:
    """families_bench.R's timings of the R fits ``names`` (all when empty)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        print(
            "Rscript not found: install r-cran-lme4 r-cran-glmmtmb r-cran-mass r-cran-jsonlite",
            file=sys.stderr,
        )
        return None
    subprocess.run([rscript, "benchmarks/families_bench.R", str(reps), *names], cwd=ROOT, check=True)
    return json.loads((ROOT / "benchmarks" / "results" / "families_r.json").read_text())


def paired_timings(reps: int) -> tuple[dict, dict | None]:
    """Each case's own fit and then its R fits, case by case: the two sides of a ratio are timed
    minutes apart at most, not the whole Python run against the whole R run (this machine's speed
    moved by up to 2x between phases of a run). Writes the R timings together in families_r.json."""
    py: dict = {}
    r: dict | None = {} if shutil.which("Rscript") else None
    for name, (*_, r_keys) in CASES.items():
        py.update(python_timings(reps, [name]))
        if r is not None:
            r.update(r_timings(reps, r_keys) or {})
    if r is not None:
        (ROOT / "benchmarks" / "results" / "families_r.json").write_text(json.dumps(r, indent=2) + "\n")
    return py, r


def core_ratio(reps: int) -> dict | None:
    """The mfr Poisson warm fit against glmer, as run.py measures it (same run, same machine): both
    medians and their ratio."""
    import run

    py = run.python_timings(reps)
    r = run.lme4_timings(reps)
    if not r:
        return None
    ours, theirs = py["fit_warm"]["median"], r["glmer_fit"]["median"]
    return {"ppl_glmm": ours, "glmer": theirs, "ratio": ours / theirs, "reps": reps}


def markdown_table(result: dict) -> str:
    """README.md's table of the new families and methods (2 significant digits)."""
    lines = ["| case | R fit | ppl_glmm | R | ratio |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(
            f"| `{row['case']}` | `{row['r_case']}` | {row['ppl_glmm']:.2g} s | {row['r']:.2g} s | "
            f"{row['ratio']:.2g} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "5")))
    ap.add_argument(
        "--table", action="store_true", help="print README.md's table from families.json and stop"
    )
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads((ROOT / "benchmarks" / "results" / "families.json").read_text())))
        return 0
    warnings.simplefilter("ignore")
    info = meta(
        f"python benchmarks/families.py --reps {args.reps}", with_r=shutil.which("Rscript") is not None
    )
    py, r = paired_timings(args.reps)
    core = core_ratio(max(args.reps, 20))  # run.py's repetitions: the ratio is the target's yardstick
    rows = []
    for name, (_, _, _, r_keys) in CASES.items():
        for rk in r_keys:
            entry = r.get(rk) if r else None
            theirs = entry["median"] if entry else None
            ratio = py[name]["median"] / theirs if theirs else None
            row = {"case": name, "ppl_glmm": py[name]["median"], "r_case": rk, "r": theirs, "ratio": ratio}
            if entry and entry.get("min"):  # the fastest fit on each side: the load's least effect
                row["ratio_min"] = py[name]["min"] / entry["min"]
            rows.append(row)
    result = {"meta": info, "reps": args.reps, "ppl_glmm": py, "r": r, "rows": rows}
    result["core"], result["core_ratio"] = core, core["ratio"] if core else None
    print(f"\n{'case':22s} {'ppl_glmm (s)':>12s} {'R fit':>28s} {'R (s)':>8s} {'ratio':>7s}")
    for row in rows:
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        r_s = f"{row['r']:.4f}" if row["r"] else "-"
        print(f"{row['case']:22s} {row['ppl_glmm']:12.4f} {row['r_case']:>28s} {r_s:>8s} {ratio:>7s}")
    if core is not None:
        print(
            f"core families' ratio (mfr Poisson warm fit / glmer, same run): {core['ppl_glmm']:.4f} s / "
            f"{core['glmer']:.4f} s = {core['ratio']:.3f}"
        )
    out = ROOT / "benchmarks" / "results" / "families.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
