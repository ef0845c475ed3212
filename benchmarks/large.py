"""Large-data benchmark (``nox -s bench_large``): 100,000 rows, a 2,100-level factor, Poisson.

Simulates the data (seeded), times ``fitglme`` in a warm process for three random-effects
structures, times lme4's ``glmer`` on the same CSV in the same run, and checks that both reach the
same log-likelihood. Each fit is repeated ``--reps`` times (default 5) on both sides and reported as
the median (and min) with its ``reps`` and ``statistic``; ``meta`` records the date, machine and
versions (see ``_meta.py``). With 5 repetitions lme4 takes about 7-8 minutes of the run.
Writes ``benchmarks/results/large.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ["y ~ x + (1|g)", "y ~ x + (1|g) + (1|h)", "y ~ x + (1 + x|g)"]
R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[2])
d <- read.csv(args[1]); d$g <- factor(d$g); d$h <- factor(d$h)
for (f in args[-(1:2)]) {
  for (i in seq_len(reps)) {
    t <- system.time(m <- glmer(as.formula(f), data = d, family = poisson))[["elapsed"]]
    cat(sprintf("%s\\t%.3f\\t%.6f\\n", f, t, as.numeric(logLik(m))))
  }
}
"""


def simulate(n: int = 100_000, levels: int = 2100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h, x = rng.integers(0, levels, n), rng.integers(0, 50, n), rng.normal(size=n)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.5, levels)[g] + rng.normal(0, 0.3, 50)[h]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g, "h": h})


def _row(seconds: list[float], loglik: float) -> dict:
    """The median (and min) over the repetitions; ``seconds`` keeps the median for the docs' figures."""
    return {
        "seconds": float(np.median(seconds)),
        "min": float(np.min(seconds)),
        "reps": len(seconds),
        "statistic": "median",
        "runs": [float(s) for s in seconds],
        "logLik": loglik,
    }


def readme_sentence(result: dict) -> str:
    """README.md's large-data figures (seconds to 3 significant digits) from a results file."""
    ours, theirs = result["ppl_glmm"], result["lme4"]
    parts = [
        f"`{f.split(' + ', 1)[1]}` {ours[f]['seconds']:.2g} s vs {theirs[f]['seconds']:.3g} s"
        for f in FORMULAS
    ]
    reps = sorted({row["reps"] for side in ("ppl_glmm", "lme4") for row in result[side].values()})
    return f"repetitions per fit: {reps}\n" + ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions of every fit, on both sides")
    ap.add_argument("--table", action="store_true", help="print README.md's figures from large.json and stop")
    args = ap.parse_args()
    if args.table:
        print(readme_sentence(json.loads((ROOT / "benchmarks" / "results" / "large.json").read_text())))
        return
    info = meta(f"python benchmarks/large.py --reps {args.reps}", with_r=shutil.which("Rscript") is not None)
    import ppl_glmm

    warnings.simplefilter("ignore")
    data = simulate()
    ppl_glmm.fitglme(data.iloc[:2000], FORMULAS[0], distribution="poisson")  # compile once
    ours = {}
    for f in FORMULAS:
        secs = []
        for _ in range(args.reps):
            t = time.perf_counter()
            m = ppl_glmm.fitglme(data, f, distribution="poisson")
            secs.append(time.perf_counter() - t)
        ours[f] = _row(secs, m.log_likelihood)
    theirs = {}
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv, script = Path(tmp) / "large.csv", Path(tmp) / "large.R"
            data.to_csv(csv, index=False)
            script.write_text(R_SCRIPT)
            out = subprocess.run(
                ["Rscript", str(script), str(csv), str(args.reps), *FORMULAS],
                capture_output=True,
                text=True,
                check=True,
            )
        runs: dict[str, list[tuple[float, float]]] = {}
        for line in out.stdout.strip().splitlines():
            f, sec, ll = line.split("\t")
            runs.setdefault(f, []).append((float(sec), float(ll)))
        theirs = {f: _row([s for s, _ in v], v[-1][1]) for f, v in runs.items()}
    print(f"{'formula':26s} {'ppl_glmm (s)':>12s} {'lme4 (s)':>9s} {'ratio':>6s} {'dlogLik':>9s}")
    for f in FORMULAS:
        a, b = ours[f], theirs.get(f)
        if b:
            ratio, dll = a["seconds"] / b["seconds"], a["logLik"] - b["logLik"]
            print(f"{f:26s} {a['seconds']:12.2f} {b['seconds']:9.2f} {ratio:6.2f} {dll:9.2e}")
        else:
            print(f"{f:26s} {a['seconds']:12.2f}   (Rscript not found)")
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(exist_ok=True)
    result = {"meta": info, "reps": args.reps, "ppl_glmm": ours, "lme4": theirs}
    (out_dir / "large.json").write_text(json.dumps(result, indent=2) + "\n")
    if theirs:
        print(readme_sentence(result))


if __name__ == "__main__":
    main()
