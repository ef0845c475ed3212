"""Make the figures of docs/ (run by ``nox -s docs`` before the pages are checked).

    python docs/make_figures.py            # writes docs/img/*.png

Each figure is one function below that returns the file it wrote; they share the fit of MATLAB's
``mfr`` example (the model of docs/getting-started.md). PNGs are small (80 dpi) and carry no
timestamp or version metadata, so re-running the script on the same versions rewrites the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import ppl_glmm
from ppl_glmm.datasets import load_mfr
from ppl_glmm.plots import PLOT_KINDS

IMG = Path(__file__).resolve().parent / "img"
DPI = 80


def mfr_model():
    """The mfr model of docs/getting-started.md (MATLAB's fitglme example)."""
    return ppl_glmm.fitglme(
        load_mfr(),
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
        distribution="Poisson",
        link="log",
        fit_method="Laplace",
        dummy_var_coding="effects",
    )


def _save(fig, name: str) -> Path:
    path = IMG / name
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def residual_plots(model) -> Path:
    """The six residual plots of ``plot_residuals`` (raw conditional residuals), one panel each."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), layout="constrained")
    for kind, ax in zip(PLOT_KINDS, axes.ravel()):
        model.plot_residuals(kind, ax=ax)
        ax.set_title(f'kind="{kind}"')
    return _save(fig, "residuals.png")


def pearson_fitted(model) -> Path:
    """Pearson residuals against fitted values: the check for the Poisson variance function."""
    fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
    model.plot_residuals("fitted", residual_type="pearson", ax=ax)
    return _save(fig, "residuals_pearson_fitted.png")


def random_effects_plot(model) -> Path:
    """The caterpillar plot of the factories' conditional modes with their SEPred intervals."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6), layout="constrained")
    model.plot_random_effects(axes=ax)
    return _save(fig, "random_effects.png")


FIGURES = (residual_plots, pearson_fitted, random_effects_plot)


def main() -> int:
    IMG.mkdir(exist_ok=True)
    model = mfr_model()
    for make in FIGURES:
        print(make(model).relative_to(IMG.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
