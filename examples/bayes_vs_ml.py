"""ML and Bayesian fits of the same model: the mfr Poisson GLMM by Laplace ML and by NUTS.

Writes the comparison table (CSV) and a forest plot (PNG) of both fits::

    python examples/bayes_vs_ml.py [output directory, default: the current directory]

The ML fit warms NUTS (start points and mass matrix from the Laplace approximation), so the defaults
need only 300 tuning steps per chain.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd

import ppl_glmm
from ppl_glmm.datasets import load_mfr


def main(out_dir: str = ".") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    glme = ppl_glmm.fitglme(
        load_mfr(),
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
        distribution="Poisson",
        link="log",
        dummy_var_coding="effects",
    )
    bayes = glme.fit_bayes(rng=2026, progress=False)  # 4 chains x 1000 draws, NUTS warmed by the ML fit
    print(bayes)
    print(bayes.priors.to_string(index=False), end="\n\n")

    table = ppl_glmm.compare_fits(glme, bayes)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(table.drop(columns=["Group", "Type"]).to_string(index=False))
    table.to_csv(out / "bayes_vs_ml.csv", index=False)

    fig = ppl_glmm.plot_compare(glme, bayes)
    fig.suptitle("mfr: Laplace ML (asymptotic normal) and NUTS posterior, 50% and 95% intervals")
    fig.savefig(out / "bayes_vs_ml.png", dpi=100, bbox_inches="tight")
    print(f"\nwrote {out / 'bayes_vs_ml.csv'} and {out / 'bayes_vs_ml.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
