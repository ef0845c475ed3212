"""Residual plots (MATLAB ``plotResiduals``) and the Jupyter HTML display.

Each plot's drawn data are compared with residuals computed here from the data and the fitted
means (not with ppl_glmm's own residual function), and with the plot's definition (plots.py).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from reference_cases import _data

import ppl_glmm
from ppl_glmm import InputError, InputTypeError
from ppl_glmm.datasets import load_mfr
from ppl_glmm.display import html_table

EXCLUDED = [3, 10, 11, 40]  # cbpp rows left out: gaps in case order, pairs dropped from the lag plot


@pytest.fixture(scope="module")
def cbpp():
    return _data("cbpp.csv")


@pytest.fixture(scope="module")
def cbpp_model(cbpp):
    """Binomial with trials (Pearson's w is the binomial size) and excluded rows."""
    return ppl_glmm.fitglme(
        cbpp, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", exclude=EXCLUDED
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _cbpp_residuals(model, data, pearson: bool) -> np.ndarray:
    """Independent residuals: proportions minus the fitted means, Pearson over sqrt(mu(1-mu)/n)."""
    y = (data["incidence"] / data["size"]).to_numpy()
    mu = model.fitted()
    r = y - mu
    if pearson:
        r = r / np.sqrt(mu * (1 - mu) / data["size"].to_numpy())
    r[EXCLUDED] = np.nan
    return r


def _points(ax):
    """The marker line (the first line drawn)."""
    line = ax.lines[0]
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def test_caseorder_plots_each_residual_against_its_row(cbpp_model, cbpp):
    r = _cbpp_residuals(cbpp_model, cbpp, pearson=False)
    ax = cbpp_model.plot_residuals("caseorder")
    x, y = _points(ax)
    used = np.setdiff1d(np.arange(len(cbpp)), EXCLUDED)
    np.testing.assert_array_equal(x, used)
    np.testing.assert_allclose(y, r[used], rtol=1e-12, atol=1e-14)
    assert len(ax.lines) == 2 and np.all(np.asarray(ax.lines[1].get_ydata()) == 0)  # reference line


def test_fitted_plot_with_pearson_residuals(cbpp_model, cbpp):
    r = _cbpp_residuals(cbpp_model, cbpp, pearson=True)
    ax = cbpp_model.plot_residuals(kind="Fitted", residual_type="Pearson")  # MATLAB's spellings
    x, y = _points(ax)
    used = np.setdiff1d(np.arange(len(cbpp)), EXCLUDED)
    np.testing.assert_allclose(x, cbpp_model.fitted()[used], rtol=1e-14)
    np.testing.assert_allclose(y, r[used], rtol=1e-10, atol=1e-13)
    assert ax.get_ylabel() == "Pearson residuals"


def test_lagged_plot_drops_pairs_with_an_unused_row(cbpp_model, cbpp):
    r = _cbpp_residuals(cbpp_model, cbpp, pearson=False)
    ax = cbpp_model.plot_residuals("lagged")
    x, y = _points(ax)
    pairs = [(r[t - 1], r[t]) for t in range(1, len(r)) if np.isfinite(r[t - 1]) and np.isfinite(r[t])]
    # 56 rows, 4 excluded (two adjacent): 55 pairs, 7 of which touch an excluded row
    assert len(pairs) == 48 == x.size
    np.testing.assert_allclose(np.column_stack([x, y]), np.array(pairs), rtol=1e-12, atol=1e-14)


def test_histogram_is_a_density_of_the_residuals(mfr_model):
    data = load_mfr()
    r = data["defects"].to_numpy() - mfr_model.fitted()
    ax = mfr_model.plot_residuals()  # MATLAB's default: histogram of raw residuals
    heights, edges = np.histogram(r, bins="auto", density=True)
    bars = ax.patches
    assert len(bars) == heights.size
    np.testing.assert_allclose([b.get_height() for b in bars], heights, rtol=1e-12)
    np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1], rtol=1e-12, atol=1e-12)
    widths = np.array([b.get_width() for b in bars])
    assert np.sum(widths * heights) == pytest.approx(1.0)


def test_probability_plot_is_matlabs_normplot(mfr_model):
    data = load_mfr()
    r = (data["defects"].to_numpy() - mfr_model.fitted()) / np.sqrt(mfr_model.fitted())  # Poisson Pearson
    ax = mfr_model.plot_residuals("probability", residual_type="pearson")
    x, y = _points(ax)
    n = r.size
    np.testing.assert_allclose(x, np.sort(r), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(y, ndtri((np.arange(1, n + 1) - 0.5) / n), rtol=1e-14)
    # the reference line passes through the quartiles (MATLAB's prctile: (i - 0.5)/n positions)
    lx, ly = (np.asarray(v, dtype=float) for v in (ax.lines[1].get_xdata(), ax.lines[1].get_ydata()))
    s = np.sort(r)
    q1 = np.interp(0.25 * n + 0.5, np.arange(1, n + 1), s)
    q3 = np.interp(0.75 * n + 0.5, np.arange(1, n + 1), s)
    slope = (ly[1] - ly[0]) / (lx[1] - lx[0])
    assert ly[0] + slope * (q1 - lx[0]) == pytest.approx(ndtri(0.25))
    assert ly[0] + slope * (q3 - lx[0]) == pytest.approx(ndtri(0.75))
    assert (lx[0], lx[1]) == (pytest.approx(s[0]), pytest.approx(s[-1]))


def test_symmetry_plot_pairs_distances_from_the_median(mfr_model):
    data = load_mfr()
    r = data["defects"].to_numpy() - mfr_model.fitted()
    ax = mfr_model.plot_residuals("symmetry")
    x, y = _points(ax)
    s, med = np.sort(r), np.median(r)
    expected_lower = [med - s[i] for i in range(50)]
    expected_upper = [s[99 - i] - med for i in range(50)]
    np.testing.assert_allclose(x, expected_lower, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, expected_upper, rtol=1e-12, atol=1e-13)
    assert np.all(x >= 0) and np.all(y >= 0)
    ref_x, ref_y = ax.lines[1].get_xdata(), ax.lines[1].get_ydata()
    np.testing.assert_array_equal(ref_x, ref_y)  # the line y = x


def test_draws_on_a_given_axes_and_leaves_the_model_unchanged(mfr_model):
    _fig, axes = plt.subplots(1, 2)
    before = (mfr_model.fitted().copy(), mfr_model.response().copy(), str(mfr_model))
    out = mfr_model.plot_residuals("caseorder", ax=axes[1])
    assert out is axes[1] and len(axes[1].lines) == 2 and len(axes[0].lines) == 0
    assert len(plt.get_fignums()) == 1
    np.testing.assert_array_equal(mfr_model.fitted(), before[0])
    np.testing.assert_array_equal(mfr_model.response(), before[1])
    assert str(mfr_model) == before[2]


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"kind": "boxplot"}, InputError, ["kind", "caseorder"]),
        ({"kind": 3}, InputTypeError, ["kind", "histogram"]),
        ({"residual_type": "deviance"}, InputError, ["residual_type", "pearson"]),
        ({"residual_type": None}, InputTypeError, ["residual_type", "raw"]),
        ({"ax": "left"}, InputTypeError, ["ax", "Axes"]),
    ],
)
def test_bad_arguments_are_refused_before_drawing(mfr_model, kwargs, error, names):
    with pytest.raises(error) as info:
        mfr_model.plot_residuals(**kwargs)
    assert all(n in str(info.value) for n in names)
    assert plt.get_fignums() == []  # no figure was made


# ---- the Jupyter HTML display ----------------------------------------------------------------

_NUMBER = re.compile(r"-?(?:\d+\.?\d*(?:e[+-]\d+)?|NaN|Inf)")


class _Checker(HTMLParser):
    """Well-formedness: every start tag closed, in order; collects the text."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.tags: Counter = Counter()

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        self.tags[tag] += 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Checker:
    p = _Checker()
    p.feed(html)
    p.close()
    assert p.stack == []
    return p


@pytest.fixture(scope="module")
def singular_model():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(np.arange(10), 5), "x": rng.normal(size=50)})
    df["y"] = 1 + df.x + rng.normal(size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ppl_glmm.fitglme(df, "y ~ x + (1|g)")


@pytest.fixture(scope="module")
def diagonal_model():
    """A covariance pattern: the display shows its 'Covariance Type' line."""
    return ppl_glmm.fitglme(
        _data("sleepstudy.csv"), "Reaction ~ Days + (Days|Subject)", covariance_pattern="Diagonal"
    )


@pytest.mark.parametrize("which", ["mfr", "cbpp", "singular", "diagonal"])
def test_html_display_has_every_number_of_the_text_display(
    which, mfr_model, cbpp_model, singular_model, diagonal_model
):
    models = {"mfr": mfr_model, "cbpp": cbpp_model, "singular": singular_model, "diagonal": diagonal_model}
    model = models[which]
    text, page = str(model), model._repr_html_()
    parsed = _parse(page)
    shown = " ".join(parsed.text)
    assert Counter(_NUMBER.findall(text)) == Counter(_NUMBER.findall(shown))
    # the same labels and values, table by table: 1 information table + criteria, coefficients,
    # one per random term and the Error table
    assert parsed.tags["table"] == 3 + len(model._fit.design.terms) + 1
    for label in ("Model information:", "Formula:", "Model fit statistics:", "Group: Error", "FitMethod"):
        assert label in text and label in shown
    for name in model.coefficient_names:
        assert f"<td>{name}</td>" in page
    assert (which == "singular") == ("Warning: boundary (singular) fit" in text)
    assert (which == "singular") == ("boundary (singular) fit" in shown)
    assert (which == "diagonal") == ("Covariance Type: Diagonal" in text)
    assert (which == "diagonal") == ("Covariance Type: Diagonal" in shown)


def test_html_escapes_text():
    page = html_table(pd.DataFrame({"Name": ["a<b & c>d"], "Estimate": [1.5]}))
    assert "a&lt;b &amp; c&gt;d" in page and "a<b" not in page
    assert " ".join(_parse(page).text).split() == ["Name", "Estimate", "a<b", "&", "c>d", "1.5"]


# ---------------------------------------------------------------- caterpillar plot


def _errorbar_data(ax):
    """(x, y, half-widths left, right) of the single errorbar container on ``ax``."""
    (container,) = ax.containers
    line, _, (bars,) = container
    x, y = line.get_xdata(), line.get_ydata()
    segs = np.array([s[:, 0] for s in bars.get_segments()])  # (lo, hi) x of each bar
    return np.asarray(x), np.asarray(y), x - segs[:, 0], segs[:, 1] - x


def test_caterpillar_plot_shows_sorted_modes_with_sepred_intervals(fitted):
    model = fitted("sleepstudy_lmm")  # (Days | Subject): two panels
    table = model.random_effects(alpha=0.1)
    axes = model.plot_random_effects(alpha=0.1)
    assert [ax.get_title() for ax in axes] == ["Subject", "Subject"]
    from ppl_glmm.inference.distributions import t_ppf

    crit = t_ppf(0.95, model.dfe)
    for ax, name in zip(axes, ["(Intercept)", "Days"]):
        rows = table[table["Name"] == name].sort_values("Estimate")
        x, y, left, right = _errorbar_data(ax)
        np.testing.assert_allclose(x, rows["Estimate"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(y, np.arange(len(rows)))
        np.testing.assert_allclose(left, crit * rows["SEPred"], rtol=1e-10)
        np.testing.assert_allclose(right, crit * rows["SEPred"], rtol=1e-10)
        assert [t.get_text() for t in ax.get_yticklabels()] == rows["Level"].astype(str).tolist()
    plt.close("all")


def test_caterpillar_plot_refuses_wrong_axes(mfr_model):
    _fig, (a, b) = plt.subplots(1, 2)
    with pytest.raises(InputTypeError, match="axes: expected 1 matplotlib Axes"):
        mfr_model.plot_random_effects(axes=[a, b])
    with pytest.raises(InputError, match="alpha"):
        mfr_model.plot_random_effects(alpha=2)
    ax = mfr_model.plot_random_effects(axes=a)[0]
    assert ax is a and len(ax.containers) == 1
    plt.close("all")
