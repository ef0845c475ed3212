"""Residual plots of a fitted model (MATLAB ``plotResiduals``), drawn with matplotlib.

The residuals are always the *conditional* ones (MATLAB), from ``model.residuals``: ``y - mu_hat``
with ``mu_hat`` from ``X beta_hat + Z b_hat + offset``; 'pearson' divides by
``sigma_hat sqrt(v(mu_hat) / w)`` (MATLAB's definition; w is the prior weight times the binomial
size; for the negative binomial v(mu) is its whole variance function ``mu + mu^2 / theta``).

The plot types (``kind``) follow MATLAB:

* ``'histogram'``: the residuals' histogram, as a probability density (numpy's 'auto' bins);
* ``'caseorder'``: each residual against its row's position in the data (0-based; unused rows leave
  gaps), with a reference line at 0;
* ``'fitted'``: each residual against its fitted value, with a reference line at 0;
* ``'lagged'``: r_t against r_(t-1) for consecutive rows of the data (a pair with an unused row is
  left out, as MATLAB's NaN residuals leave it out), with reference lines at 0;
* ``'probability'``: MATLAB's ``normplot``: the sorted residuals r_(i) (x) against the standard
  normal quantiles ``ndtri((i - 0.5) / n)`` (y, labelled with the probabilities), with the line
  through the data's first and third quartiles (the "hazen" percentiles, MATLAB's ``prctile``);
* ``'symmetry'``: the symmetry plot: for i = 1..floor(n/2), the distance of the i-th largest
  residual above the median (y) against the distance of the i-th smallest below it (x), with the
  line y = x (a symmetric distribution lies on it).

``plot_random_effects`` is the caterpillar plot of the conditional modes: one panel per random-effects
term and coefficient, levels sorted by their estimate, each with its interval
``Estimate -/+ t_{1-alpha/2, DF} SEPred`` from ``model.random_effects(dfmethod, alpha)`` (MATLAB's
SEPred includes the uncertainty of beta-hat; lme4's dotplot of ``ranef(condVar=TRUE)`` uses
``1.96 condsd`` without it).

matplotlib is imported only when a plot is drawn (the ``plot`` extra: ``pip install "ppl_glmm[plot]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, InputTypeError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from .model import GeneralizedLinearMixedModel

__all__ = [
    "PLOT_KINDS",
    "RESIDUAL_TYPES",
    "caterpillar_rows",
    "conditional_residuals",
    "plot_random_effects",
    "plot_residuals",
]

PLOT_KINDS = ("histogram", "caseorder", "fitted", "lagged", "probability", "symmetry")
RESIDUAL_TYPES = ("raw", "pearson")
_PROBABILITY_TICKS = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)


def _choice(value: Any, allowed: tuple[str, ...], arg: str) -> str:
    """``value`` as one of ``allowed`` (case-insensitive, MATLAB's spellings accepted)."""
    if not isinstance(value, str):
        raise InputTypeError(f"{arg}: expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    key = value.strip().lower().replace("_", "").replace(" ", "")
    if key not in allowed:
        raise InputError(f"{arg}: unknown value {value!r}; use one of {', '.join(repr(a) for a in allowed)}")
    return key


def conditional_residuals(model: GeneralizedLinearMixedModel, residual_type: str = "raw") -> np.ndarray:
    """The residuals the plots show: ``model.residuals(conditional=True, kind=residual_type)``, one
    per input row (NaN for unused rows); 'raw' or 'pearson' only, as MATLAB's plotResiduals."""
    residual_type = _choice(residual_type, RESIDUAL_TYPES, "residual_type")
    return model.residuals(conditional=True, kind=residual_type)


def _pyplot(what: str = "plot_residuals"):
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError(
            f'{what} needs matplotlib: pip install "ppl_glmm[plot]" (or pip install matplotlib)'
        ) from err
    return plt


def plot_residuals(
    model: GeneralizedLinearMixedModel,
    kind: str = "histogram",
    residual_type: str = "raw",
    ax: Axes | None = None,
) -> Axes:
    """Plot the conditional residuals of ``model`` (MATLAB ``plotResiduals``) and return the Axes.

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
        A fitted model (not changed).
    kind : {'histogram', 'caseorder', 'fitted', 'lagged', 'probability', 'symmetry'}
        The plot (module docstring); case-insensitive.
    residual_type : {'raw', 'pearson'}
        Raw ``y - mu_hat`` or Pearson residuals.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure's Axes.

    Returns
    -------
    matplotlib.axes.Axes
    """
    kind = _choice(kind, PLOT_KINDS, "kind")
    residual_type = _choice(residual_type, RESIDUAL_TYPES, "residual_type")
    plt = _pyplot()
    from matplotlib.axes import Axes

    if ax is not None and not isinstance(ax, Axes):
        raise InputTypeError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    if ax is None:
        ax = plt.figure().add_subplot()
    r_all = conditional_residuals(model, residual_type)
    used = np.isfinite(r_all)
    r = r_all[used]
    label = f"{'Raw' if residual_type == 'raw' else 'Pearson'} residuals"
    marker = {"marker": "x", "linestyle": "none"}
    ref = {"color": "0.4", "linestyle": "--", "linewidth": 1}
    if kind == "histogram":
        ax.hist(r, bins="auto", density=True, edgecolor="white")
        ax.set(xlabel=label, ylabel="Probability density", title="Histogram of residuals")
    elif kind == "caseorder":
        ax.plot(np.flatnonzero(used), r, **marker)
        ax.axhline(0.0, **ref)
        ax.set(xlabel="Row number", ylabel=label, title="Case order plot of residuals")
    elif kind == "fitted":
        ax.plot(model.fitted(conditional=True)[used], r, **marker)
        ax.axhline(0.0, **ref)
        ax.set(xlabel="Fitted values", ylabel=label, title="Plot of residuals vs. fitted values")
    elif kind == "lagged":
        pair = used[1:] & used[:-1]
        ax.plot(r_all[:-1][pair], r_all[1:][pair], **marker)
        ax.axhline(0.0, **ref)
        ax.axvline(0.0, **ref)
        ax.set(xlabel="Residual(t-1)", ylabel="Residual(t)", title="Plot of residuals vs. lagged residuals")
    elif kind == "probability":
        _normal_probability(ax, r, marker, ref)
        ax.set(xlabel=label, ylabel="Probability", title="Normal probability plot of residuals")
    else:
        lower, upper = symmetry_distances(r)
        ax.plot(lower, upper, **marker)
        top = float(max(lower.max(initial=0.0), upper.max(initial=0.0)))
        ax.plot([0.0, top], [0.0, top], **ref)
        ax.set(
            xlabel="Lower distance to median",
            ylabel="Upper distance to median",
            title="Symmetry plot of residuals",
        )
    return ax


def normal_probability_points(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted residuals, standard normal quantiles ``ndtri((i - 0.5) / n)``): MATLAB's normplot."""
    from scipy.special import ndtri

    n = r.size
    return np.sort(r), ndtri((np.arange(1, n + 1) - 0.5) / n)


def symmetry_distances(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) distances to the median: ``median - r_(i)`` and ``r_(n+1-i) - median`` for
    i = 1..floor(n/2), r_(i) the sorted residuals."""
    s = np.sort(r)
    h = s.size // 2
    med = float(np.median(s))
    return med - s[:h], s[::-1][:h] - med


def _normal_probability(ax, r: np.ndarray, marker: dict, ref: dict) -> None:
    from scipy.special import ndtri

    x, q = normal_probability_points(r)
    ax.plot(x, q, **marker)
    # MATLAB's reference line: through the first and third quartiles, over the data's range
    q1, q3 = np.percentile(r, [25.0, 75.0], method="hazen")
    z1, z3 = ndtri(0.25), ndtri(0.75)
    slope = (z3 - z1) / (q3 - q1) if q3 > q1 else 0.0
    ends = np.array([x[0], x[-1]]) if x.size else np.zeros(2)
    ax.plot(ends, z1 + slope * (ends - q1), **ref)
    ticks = [p for p in _PROBABILITY_TICKS if 1.0 / (r.size + 1) <= p <= 1 - 1.0 / (r.size + 1)]
    ax.set_yticks(ndtri(np.array(ticks)), [f"{p:g}" for p in ticks])


def caterpillar_rows(table, group: str, name: str, term_index: int | None = None):
    """The rows of a ``random_effects`` table for one panel (``group``, coefficient ``name``; the
    ``term_index``-th term with that grouping, for a grouping used by several terms), sorted by
    Estimate: the order the caterpillar plot draws them, bottom to top."""
    sel = table[(table["Group"] == group) & (table["Name"] == name)]
    if term_index is not None:
        sel = sel[sel["_term"] == term_index]
    return sel.sort_values("Estimate", kind="stable")


def plot_random_effects(
    model: GeneralizedLinearMixedModel,
    *,
    alpha: float = 0.05,
    dfmethod: str = "residual",
    axes=None,
    max_levels: int = 60,
):
    """Caterpillar plot of the conditional modes with their SEPred intervals (module docstring).

    One panel per random-effects term and coefficient, in formula order; levels sorted by their
    estimate. ``axes``: a sequence of matplotlib Axes, one per panel (default: a new figure with
    the panels side by side). A panel with more than ``max_levels`` levels shows every level's
    interval but labels none (the labels would overlap). Returns the list of Axes.
    """
    from matplotlib.axes import Axes

    from .model import _check_alpha

    _check_alpha(alpha)
    if isinstance(max_levels, bool) or not isinstance(max_levels, (int, np.integer)) or max_levels < 1:
        raise InputError(f"max_levels: expected a positive integer, got {max_levels!r}")
    table = model.random_effects(dfmethod=dfmethod, alpha=alpha)
    terms = model._ws.design.terms
    table["_term"] = np.repeat(np.arange(len(terms)), [t.size for t in terms])
    panels = [(r, t.group, name) for r, t in enumerate(terms) for name in t.names]
    if axes is None:
        plt = _pyplot("plot_random_effects")
        height = max(2.5, min(12.0, 0.18 * max(t.n_levels for t in terms) + 1.0))
        _fig, axs = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), height), squeeze=False)
        axes = list(axs[0])
    else:
        axes = [axes] if isinstance(axes, Axes) else list(axes)
        if len(axes) != len(panels) or not all(isinstance(a, Axes) for a in axes):
            raise InputTypeError(
                f"axes: expected {len(panels)} matplotlib Axes (one per term and coefficient: "
                f"{', '.join(f'{g}/{n}' for _, g, n in panels)}), got {len(axes)}"
            )
    for ax, (r, group, name) in zip(axes, panels):
        rows = caterpillar_rows(table, group, name, r)
        pos = np.arange(len(rows))
        est = rows["Estimate"].to_numpy()
        ax.errorbar(
            est,
            pos,
            xerr=np.vstack([est - rows["Lower"].to_numpy(), rows["Upper"].to_numpy() - est]),
            fmt="o",
            markersize=3,
            elinewidth=1,
            capsize=0,
        )
        ax.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
        if len(rows) <= max_levels:
            ax.set_yticks(pos, rows["Level"].astype(str).tolist())
        else:
            ax.set_yticks([])
        ax.set(xlabel=f"{name}", title=f"{group}", ylim=(-0.7, len(rows) - 0.3))
    return axes
