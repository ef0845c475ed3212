"""Benchmarks against lme4 on the same machine, in the same run (``nox -s bench``).

Python, on the mfr data (100 rows, 20 factories, Poisson, effects coding):

* ``refit``: median time of ``model.refit(ynew)`` over fresh simulated responses (simulated before
  timing), against ``lme4::refit``;
* ``fit_warm``: a fresh ``fitglme`` in a warm process (compiled functions of the family cached in
  the process, as after any earlier fit of a Poisson model), against ``glmer`` after a warm-up fit;
* ``fit_first_in_process``: the first ``fitglme`` in a new process after ``import ppl_glmm, pymc``
  and the fit's modules (``ppl_glmm.api``, which ``import ppl_glmm`` leaves to the first fit);
  on-disk caches warm, nothing compiled loaded in the process yet: the backend's start-up is paid
  here (for these 100 rows PyTensor's C backend: reading its module cache and loading the modules);
  reported for information (whole-process start-up: ``benchmarks/startup.py``);
* ``random``: one ``model.random()`` draw, against ``simulate()``.

Every row is the median (and min) over ``--reps`` repetitions (default 20, or ``BENCH_REPS``); the
first fit in a new process over ``--first-fit-reps`` new processes (default: ``--reps``). Each row
of the results file records its ``reps`` and ``statistic``, and ``meta`` records the date, the
machine (CPU model, cores, RAM, load at the start) and the versions of Python, the Python packages,
R and lme4. Run it on an otherwise idle machine: the load average at the start is recorded.

Writes ``benchmarks/results/latest.json`` and prints a table with the ratios and the issue's targets
(refit <= lme4 refit / 10; warm fit <= glmer).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
MFR_CSV = ROOT / "tests" / "reference" / "data" / "mfr.csv"
FORMULA = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"


def _stats(ts) -> dict:
    ts = np.asarray(ts)
    return {
        "median": float(np.median(ts)),
        "min": float(ts.min()),
        "reps": int(ts.size),
        "statistic": "median",
    }


def _fit(ppl_glmm, data):
    return ppl_glmm.fitglme(data, FORMULA, distribution="Poisson", link="log", dummy_var_coding="effects")


def python_timings(reps: int) -> dict:
    import ppl_glmm
    from ppl_glmm import pymc_model
    from ppl_glmm.datasets import load_mfr

    data = load_mfr()
    model = _fit(ppl_glmm, data)  # warm-up: compiles (or loads from the disk cache)
    model.random(rng=0)
    fit_t = []
    for _ in range(reps):
        t = time.perf_counter()
        _fit(ppl_glmm, data)
        fit_t.append(time.perf_counter() - t)
    ys = [model.random(rng=s) for s in range(1, reps + 1)]
    compiles = dict(pymc_model.COMPILE_COUNT)
    refit_t = []
    for y in ys:
        t = time.perf_counter()
        model.refit(y)
        refit_t.append(time.perf_counter() - t)
    assert pymc_model.COMPILE_COUNT == compiles, "refit compiled something"
    rand_t = []
    for s in range(reps):
        t = time.perf_counter()
        model.random(rng=s)
        rand_t.append(time.perf_counter() - t)
    return {"fit_warm": _stats(fit_t), "refit": _stats(refit_t), "random": _stats(rand_t)}


def first_fit_in_new_process(reps: int) -> dict:
    code = (
        "import time, ppl_glmm, ppl_glmm.api, pymc; from ppl_glmm.datasets import load_mfr; "
        "d = load_mfr(); t = time.perf_counter(); "
        f"ppl_glmm.fitglme(d, {FORMULA!r}, distribution='Poisson', dummy_var_coding='effects'); "
        "print(time.perf_counter() - t)"
    )
    ts = []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        ts.append(float(out.stdout.strip().splitlines()[-1]))
    return _stats(ts)


def lme4_timings(reps: int) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        print(
            "Rscript not found: install R and lme4 to compare "
            "(apt-get install -y r-base-core r-cran-lme4 r-cran-jsonlite)",
            file=sys.stderr,
        )
        return None
    out = subprocess.run(
        [rscript, str(ROOT / "benchmarks" / "lme4_bench.R"), str(MFR_CSV), str(reps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


README_ROWS = [
    ("`refit(ynew)` vs `lme4::refit`", "refit", "refit"),
    ("fit in a warm process (compiled functions loaded) vs `glmer`", "fit_warm", "glmer_fit"),
    (
        "first fit in a new process (after `import ppl_glmm, pymc`; disk caches warm) vs `glmer`",
        "fit_first_in_process",
        "glmer_fit",
    ),
    ("`random()` vs `simulate()`", "random", "simulate"),
]


def markdown_table(result: dict) -> str:
    """README.md's speed table (2 significant digits) and the repetitions to state above it."""
    py, r = result["ppl_glmm"], result["lme4"]
    reps = sorted({py[k]["reps"] for _, k, _ in README_ROWS} | {r[k]["reps"] for _, _, k in README_ROWS})
    lines = [f"repetitions per row: {reps}", "", "| | ppl_glmm | lme4 | ratio |", "|---|---|---|---|"]
    for label, ours, theirs in README_ROWS:
        a, b = py[ours]["median"], r[theirs]["median"]
        lines.append(f"| {label} | {a:.2g} s | {b:.2g} s | {a / b:.2g} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "20")))
    ap.add_argument("--first-fit-reps", type=int, default=None, help="new processes (default: --reps)")
    ap.add_argument("--table", action="store_true", help="print README.md's table from latest.json and stop")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())))
        return 0
    reps = args.reps
    first_reps = args.first_fit_reps or reps
    warnings.simplefilter("ignore")  # simulated responses can give singular fits; timing only
    info = meta(
        f"python benchmarks/run.py --reps {reps} --first-fit-reps {first_reps}",
        with_r=shutil.which("Rscript") is not None,
    )
    py = python_timings(reps)
    py["fit_first_in_process"] = first_fit_in_new_process(first_reps)
    r = lme4_timings(reps)
    result = {
        "meta": info,
        "reps": reps,
        "ppl_glmm": py,
        "lme4": r,
    }
    ok = True
    print(f"{'quantity':28s} {'ppl_glmm (s)':>14s} {'lme4 (s)':>10s} {'ratio':>8s}")
    pairs = [
        ("refit", "refit"),
        ("fit_warm", "glmer_fit"),
        ("fit_first_in_process", "glmer_fit"),
        ("random", "simulate"),
    ]
    ratios = {}
    for ours, theirs in pairs:
        a = py[ours]["median"]
        b = r[theirs]["median"] if r else float("nan")
        ratios[ours] = a / b if r else None
        print(f"{ours:28s} {a:14.4f} {b:10.4f} {a / b if r else float('nan'):8.3f}")
    result["ratios"] = ratios
    if r:
        checks = {
            "refit <= lme4 refit / 10": ratios["refit"] <= 0.1,
            "warm first fit <= glmer": ratios["fit_warm"] <= 1.0,
        }
        result["targets"] = checks
        for k, v in checks.items():
            print(f"target {k}: {'met' if v else 'NOT met'}")
            ok &= v
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'latest.json'}")
    if r:
        print(markdown_table(result))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
