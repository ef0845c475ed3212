"""One bambi fit of the mfr model, timed; run by benchmarks/bayes.py with bambi's own Python.

bambi 0.21 pins formulae < 0.7, so it lives in a virtual environment of its own (``nox -s bench_bayes``
makes it). Prints one JSON line: wall seconds of model build + sampling, minimum bulk ESS over every
posterior parameter, divergences.
"""

import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    csv, chains, draws, tune, seed, cores = sys.argv[1], *map(int, sys.argv[2:7])
    import arviz as az
    import bambi as bmb
    import pandas as pd

    df = pd.read_csv(csv)
    df["supplier"] = pd.Categorical(df["supplier"], categories=["C", "B", "A"])
    df["factory"] = df["factory"].astype(str)
    t0 = time.perf_counter()
    model = bmb.Model(
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)", df, family="poisson"
    )
    idata = model.fit(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed, progressbar=False)
    seconds = time.perf_counter() - t0
    ess = az.ess(idata, method="bulk")
    min_ess = min(float(ess[v].min()) for v in ess.data_vars)
    div = int(idata["sample_stats"]["diverging"].sum())
    print(
        json.dumps(
            {"seconds": seconds, "min_ess_bulk": min_ess, "divergences": div, "bambi": bmb.__version__}
        )
    )


if __name__ == "__main__":
    main()
