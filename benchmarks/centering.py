"""noncentered='auto' checked on the reference models: for each, rho_r per term (the share of prior
variance the ML fit's data leave in the random effects, ``bayes.fit.retained_prior_variance``), the
parametrisation 'auto' picks, and the minimum bulk ESS, divergences and ESS per second of sampling
with every term centred and with every term non-centred (``nox -s bench_centering``).

Each fit: ``fit_bayes`` on the fitted ML model, 2 chains x 1000 draws, 2 cores, the defaults
otherwise (ML warm start, 300 tuning steps, target_accept 0.9), ``--seeds`` seeds (default 1 2);
reported are means over the seeds. ESS/s divides by ``sampling_time`` (NUTS set-up, tuning and
draws). Writes ``benchmarks/results/centering.json`` and prints a markdown table (docs/bayes.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]

MODELS = [
    "mfr_poisson_effects",
    "cbpp_binomial",
    "sleepstudy_lmm",
    "poisson_offset_interaction",
    "negative_binomial_log",
    "binary_slope",
    "gamma_log_slope",
    "grouseticks_nested_crossed",
]


def _fit(name: str):
    from bayes_family_cases import FAMILY_CASES, family_fit
    from reference_cases import fit_case

    return family_fit(name) if name in FAMILY_CASES else fit_case(name)


def run_model(name: str, seeds: list[int], draws: int) -> dict:
    import arviz as az

    from ppl_glmm.bayes.fit import choose_centering, retained_prior_variance

    m = _fit(name)
    rhos = retained_prior_variance(m)
    row: dict = {
        "rho": rhos,
        "auto_centred": list(choose_centering("auto", m, len(rhos))),
    }
    for label, nc in (("centred", False), ("non_centred", True)):
        runs = []
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = m.fit_bayes(draws=draws, chains=2, cores=2, rng=seed, progress=False, noncentered=nc)
            ess = az.ess(b.idata, method="bulk")
            min_ess = min(float(ess[v].min()) for v in ess.data_vars)
            div = int(b.idata["sample_stats"]["diverging"].sum())
            runs.append(
                {"seed": seed, "min_ess_bulk": min_ess, "seconds": b.sampling_time, "divergences": div}
            )
        row[label] = {
            "min_ess_bulk_mean": float(np.mean([r["min_ess_bulk"] for r in runs])),
            "ess_per_second_mean": float(np.mean([r["min_ess_bulk"] / r["seconds"] for r in runs])),
            "divergences": int(sum(r["divergences"] for r in runs)),
            "runs": runs,
        }
    better = (
        "centred"
        if row["centred"]["ess_per_second_mean"] > row["non_centred"]["ess_per_second_mean"]
        else "non_centred"
    )
    row["better"] = better
    row["auto_picks_better"] = (
        (better == "centred") == all(row["auto_centred"]) if len(set(row["auto_centred"])) == 1 else None
    )
    return row


def markdown_table(res: dict) -> str:
    lines = [
        "| model | rho per term | 'auto' picks | centred: min ESS, ESS/s, divergences "
        "| non-centred: min ESS, ESS/s, divergences |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["models"].items():
        pick = ", ".join("centred" if c else "non-centred" for c in r["auto_centred"])
        cells = [
            f"{r[k]['min_ess_bulk_mean']:.0f}, {r[k]['ess_per_second_mean']:.0f}, {r[k]['divergences']}"
            for k in ("centred", "non_centred")
        ]
        bold = [f"**{c}**" if k == r["better"] else c for k, c in zip(("centred", "non_centred"), cells)]
        rho = ", ".join(f"{x:.2f}" for x in r["rho"])
        lines.append(f"| {name} | {rho} | {pick} | {bold[0]} | {bold[1]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--table", action="store_true", help="print the table of --out and stop")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "centering.json"))
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    res = {
        "meta": meta(" ".join(["python", "benchmarks/centering.py", *sys.argv[1:]])),
        "seeds": args.seeds,
        "statistic": "mean over seeds; 2 chains x draws, 2 cores, ML warm start, tune 300, target_accept 0.9",
        "draws": args.draws,
        "models": {},
    }
    for name in args.models:
        res["models"][name] = run_model(name, args.seeds, args.draws)
        print(
            name,
            json.dumps({k: v for k, v in res["models"][name].items() if k not in ("centred", "non_centred")}),
            flush=True,
        )
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(markdown_table(res))


if __name__ == "__main__":
    main()
