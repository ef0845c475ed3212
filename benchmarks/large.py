"""Large-data benchmark (``nox -s bench_large``): 100,000 rows, a 2,100-level factor, Poisson.

Simulates the data (seeded), times ``fitglme`` in a warm process for three random-effects
structures, times lme4's ``glmer`` on the same CSV in the same run, and checks that both reach the
same log-likelihood. Writes ``benchmarks/results/large.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ["y ~ x + (1|g)", "y ~ x + (1|g) + (1|h)", "y ~ x + (1 + x|g)"]
R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$g <- factor(d$g); d$h <- factor(d$h)
for (f in args[-1]) {
  t <- system.time(m <- glmer(as.formula(f), data = d, family = poisson))[["elapsed"]]
  cat(sprintf("%s\\t%.3f\\t%.6f\\n", f, t, as.numeric(logLik(m))))
}
"""


def simulate(n: int = 100_000, levels: int = 2100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h, x = rng.integers(0, levels, n), rng.integers(0, 50, n), rng.normal(size=n)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.5, levels)[g] + rng.normal(0, 0.3, 50)[h]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g, "h": h})


def main() -> None:
    import ppl_glmm

    warnings.simplefilter("ignore")
    data = simulate()
    ppl_glmm.fitglme(data.iloc[:2000], FORMULAS[0], distribution="poisson")  # compile once
    ours = {}
    for f in FORMULAS:
        t = time.perf_counter()
        m = ppl_glmm.fitglme(data, f, distribution="poisson")
        ours[f] = {"seconds": time.perf_counter() - t, "logLik": m.log_likelihood}
    theirs = {}
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv, script = Path(tmp) / "large.csv", Path(tmp) / "large.R"
            data.to_csv(csv, index=False)
            script.write_text(R_SCRIPT)
            out = subprocess.run(
                ["Rscript", str(script), str(csv), *FORMULAS], capture_output=True, text=True, check=True
            )
        for line in out.stdout.strip().splitlines():
            f, sec, ll = line.split("\t")
            theirs[f] = {"seconds": float(sec), "logLik": float(ll)}
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
    (out_dir / "large.json").write_text(json.dumps({"ppl_glmm": ours, "lme4": theirs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
