"""Bayesian fits of the mfr model: ppl_glmm against bambi 0.21 on one machine in one run (nox -s bench_bayes).

Every fit runs in a fresh process (on-disk compile caches warm: one untimed warm-up run each), from
the data frame to the sampled posterior: ppl_glmm's ``fitglme_bayes`` (ML fit, model build, compile,
NUTS, pointwise log-likelihood) and bambi's ``Model(...).fit`` (model build, compile, NUTS). Same
formula, draws and chains. Reported per configuration: median wall time over ``--reps`` seeds, the
minimum bulk ESS over every posterior parameter (random effects included), and ESS per second
(median of the per-run ratios). Configurations:

* ``ppl_glmm``: the defaults (PyMC's NUTS, ML warm start, 300 tuning steps, ``noncentered='auto'``,
  which centres mfr's factory term);
* ``ppl_glmm_noncentered``: the defaults but the random effects non-centred (bambi's form);
* ``ppl_glmm_tune1000``: ML warm start with bambi's 1000 tuning steps;
* ``ppl_glmm_auto``: no ML warm start (PyMC's jitter+adapt_diag), 1000 tuning steps;
* ``ppl_glmm_ta08``: the defaults but bambi's (PyMC's) target_accept of 0.8 instead of 0.9;
* ``ppl_glmm_nutpie``: nutpie (when installed), ML start, 300 tuning steps;
* ``bambi``: bambi 0.21 defaults, 1000 tuning steps (needs ``--bambi-python``).

Writes ``benchmarks/results/bayes.json``, with ``meta`` (date, machine, versions; see ``_meta.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
MFR_CSV = ROOT / "tests" / "reference" / "data" / "mfr.csv"
FORMULA = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"
CONFIGS = {
    "ppl_glmm": {},
    "ppl_glmm_noncentered": {"noncentered": True},
    "ppl_glmm_tune1000": {"tune": 1000},
    "ppl_glmm_auto": {"init": "auto", "tune": 1000},
    "ppl_glmm_ta08": {"target_accept": 0.8},
    "ppl_glmm_nutpie": {"sampler": "nutpie"},
}


def worker(config: str, chains: int, draws: int, seed: int, cores: int) -> dict:
    """One timed ppl_glmm fit in this (fresh) process."""
    import warnings

    warnings.filterwarnings("ignore")
    import arviz as az
    import pandas as pd
    import pymc  # noqa: F401  (bambi's worker imports bambi, hence pymc, before its clock starts too)

    import ppl_glmm
    import ppl_glmm.api  # the fit's modules, imported lazily by ppl_glmm: load them before the clock
    import ppl_glmm.bayes

    df = pd.read_csv(MFR_CSV)
    df["supplier"] = pd.Categorical(df["supplier"], categories=["C", "B", "A"])
    t0 = time.perf_counter()
    b = ppl_glmm.fitglme_bayes(
        df,
        FORMULA,
        distribution="Poisson",
        dummy_var_coding="effects",
        draws=draws,
        chains=chains,
        cores=cores,
        rng=seed,
        progress=False,
        **CONFIGS[config],
    )
    seconds = time.perf_counter() - t0
    ess = az.ess(b.idata, method="bulk")
    min_ess = min(float(ess[v].min()) for v in ess.data_vars)
    div = int(b.idata["sample_stats"]["diverging"].sum())
    return {"seconds": seconds, "min_ess_bulk": min_ess, "divergences": div, "tune": b.settings.tune}


def _run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    secs = np.array([r["seconds"] for r in runs])
    ess = np.array([r["min_ess_bulk"] for r in runs])
    return {
        "seconds_median": float(np.median(secs)),
        "min_ess_bulk_median": float(np.median(ess)),
        "ess_per_second_median": float(np.median(ess / secs)),
        "divergences": int(sum(r["divergences"] for r in runs)),
        "runs": runs,
    }


LABELS = {
    "ppl_glmm": "ppl_glmm defaults (ML warm start, tune 300, centring 'auto')",
    "ppl_glmm_noncentered": "ppl_glmm defaults, non-centred",
    "ppl_glmm_tune1000": "ppl_glmm, ML warm start, tune 1000",
    "ppl_glmm_auto": "ppl_glmm, init='auto', tune 1000",
    "ppl_glmm_ta08": "ppl_glmm defaults, target_accept 0.8",
    "ppl_glmm_nutpie": "ppl_glmm, sampler='nutpie'",
    "bambi": "bambi 0.21 (tune 1000, target_accept 0.8)",
}


def markdown_table(results: dict) -> str:
    """The docs' table: one row per configuration and number of chains."""
    lines = [
        "| configuration | chains | wall time (s) | min bulk ESS | ESS/s | vs bambi |",
        "|---|---|---|---|---|---|",
    ]
    for key, block in results["configs"].items():
        chains = key.split("_")[1]
        for name, v in block.items():
            ratio = v.get("ess_per_second_vs_bambi")
            lines.append(
                f"| {LABELS.get(name, name)} | {chains} | {v['seconds_median']:.2f} | "
                f"{v['min_ess_bulk_median']:.0f} | {v['ess_per_second_median']:.1f} | "
                f"{'1' if name == 'bambi' else (f'{ratio:.2f}x' if ratio else '')} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--chains", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bambi-python", help="Python of a virtual environment with bambi 0.21")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bayes.json"))
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    if args.worker:
        res = worker(args.worker, args.chains[0], args.draws, args.seed, args.cores)
        print(json.dumps(res))
        return

    try:
        import nutpie  # noqa: F401

        configs = list(CONFIGS)
    except ImportError:
        configs = [c for c in CONFIGS if c != "ppl_glmm_nutpie"]
    results: dict = {
        "meta": meta(" ".join(["python", "benchmarks/bayes.py", *sys.argv[1:]]), extra_packages=("nutpie",)),
        "reps": args.reps,
        "statistic": "median over reps runs, each in a fresh process (one untimed warm-up run first)",
        "draws": args.draws,
        "cores": args.cores,
        "configs": {},
    }
    names = configs + (["bambi"] if args.bambi_python else [])

    def command(name: str, chains: int, seed: int) -> list[str]:
        common = [str(chains), str(args.draws)]
        if name == "bambi":
            worker_py = str(ROOT / "benchmarks" / "bambi_worker.py")
            return [args.bambi_python, worker_py, str(MFR_CSV), *common, "1000", str(seed), str(args.cores)]
        flags = ["--chains", common[0], "--draws", common[1], "--cores", str(args.cores), "--seed", str(seed)]
        return [sys.executable, __file__, "--worker", name, *flags]

    for chains in args.chains:
        block = {}
        for name in names:
            _run(command(name, chains, 0))  # warm the on-disk caches (untimed)
            runs = [_run(command(name, chains, args.seed + rep)) for rep in range(args.reps)]
            block[name] = _summary(runs)
            print(
                f"chains={chains} {name:20s} {block[name]['seconds_median']:6.2f} s  "
                f"min ESS {block[name]['min_ess_bulk_median']:6.0f}  "
                f"ESS/s {block[name]['ess_per_second_median']:6.1f}  div {block[name]['divergences']}",
                flush=True,
            )
        if "bambi" in block:
            ref = block["bambi"]["ess_per_second_median"]
            for name in configs:
                block[name]["ess_per_second_vs_bambi"] = block[name]["ess_per_second_median"] / ref
        results["configs"][f"chains_{chains}"] = block
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
