"""MATLAB's ``disp(glme)`` layout for a fitted model.

Numbers use 5 significant digits (MATLAB ``format short g``). In a numeric column the values are
right-aligned among themselves and the block is left-aligned under the header; text columns show
``{'name'}`` padded inside the braces. Columns are separated by 4 spaces, text columns by 8. The
formula is wrapped at spaces to ``FORMULA_WIDTH`` columns (MATLAB wraps it to the command window).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from .fit_methods import METHODS

__all__ = ["DisplayContent", "display_content", "format_table", "html_table", "model_display", "model_html"]

_INDENT = "    "
FORMULA_WIDTH = 80  # the formula line's width, indent included (a fixed width: the display is text)


def _num(v) -> str:
    """MATLAB's ``format short g``: 5 significant digits (0.12346, 1.2346e-07), but an integer
    value in full (a DF of 123458 stays 123458, where ``%.5g`` gives 1.2346e+05); NaN, Inf and
    -Inf as MATLAB writes them."""
    if isinstance(v, float) and v != v:
        return "NaN"
    v = float(v)
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.5g}"


def _wrap_formula(formula: str) -> list[str]:
    """The formula in lines of at most ``FORMULA_WIDTH`` columns, broken only at spaces outside
    backticked names (a term longer than a line stays whole), the first indented 4 spaces and the
    rest 6."""
    words = [w for w in re.findall(r"(?:`[^`]*`|[^\s`])+", formula)]
    lines, line = [], _INDENT
    for w in words:
        if line.strip() and len(line) + 1 + len(w) > FORMULA_WIDTH:
            lines.append(line)
            line = _INDENT + "  " + w
        else:
            line = line + (" " if line.strip() else "") + w
    lines.append(line)
    return lines


def format_table(df: pd.DataFrame) -> list[str]:
    cols = []
    for name in df.columns:
        s = df[name]
        if pd.api.types.is_numeric_dtype(s):
            vals = [_num(v) for v in s]
            vw = max(len(v) for v in vals) if vals else 0
            vals = [v.rjust(vw) for v in vals]
            gap = 4
        else:
            inner = max(len(str(v)) + 2 for v in s) if len(s) else 0
            vals = ["{" + f"'{v}'".ljust(inner) + "}" for v in s]
            vw = inner + 2
            gap = 8
        width = max(len(str(name)), vw)
        cols.append((str(name).ljust(width), [v.ljust(width) for v in vals], gap))
    lines = []
    header = "".join(h + (" " * g if k < len(cols) - 1 else "") for k, (h, _, g) in enumerate(cols))
    lines.append(_INDENT + header)
    for i in range(len(df)):
        row = "".join(c[1][i] + (" " * c[2] if k < len(cols) - 1 else "") for k, c in enumerate(cols))
        lines.append(_INDENT + row)
    return lines


@dataclass(frozen=True)
class DisplayContent:
    """What ``print(model)`` and the Jupyter HTML display show, gathered once for both renderers.

    ``counts`` and ``labels`` are the (label, value) rows of "Model information" (integers, then
    text); ``groups`` are the (heading, subtitle, table) triples of the covariance parameters, the
    last being ``Group: Error``; ``warnings`` the fit's messages."""

    headline: str
    counts: list[tuple[str, int]]
    labels: list[tuple[str, str]]
    formula: str
    criterion: pd.DataFrame
    coefficients: pd.DataFrame
    groups: list[tuple[str, str | None, pd.DataFrame]]
    warnings: list[str] = field(default_factory=list)


def display_content(model) -> DisplayContent:
    """The content of the display of ``model`` (read-only). MATLAB's headline says how the model
    was fitted: 'ML' (Laplace, ApproximateLaplace, quadrature), 'PL' (pseudo-likelihood: MPL,
    REMPL); 'REML' for the restricted likelihood.

    A term whose covariance pattern is not the default (FullCholesky; Isotropic for one column)
    gets a ``Covariance Type: <type>`` subtitle under its ``Group:`` heading (the title of MATLAB's
    covarianceParameters table); default terms show none, so default displays are unchanged."""
    method = METHODS[model.fit_method]
    by = "PL" if method.pseudo else "REML" if method.restricted else "ML"
    fm = fit_method_label(model)
    groups = []
    psi_tables = model._covariance_tables(alpha=None)
    for term, pattern, table in zip(model._ws.design.terms, model._ws.patterns.terms, psi_tables[:-1]):
        subtitle = None if pattern.is_default else table.attrs["title"]  # shown when a pattern was chosen
        heading = f"Group: {term.group} ({term.n_levels} Levels)"
        groups.append((heading, subtitle, table[["Name1", "Name2", "Type", "Estimate"]]))
    groups.append(("Group: Error", None, psi_tables[-1][["Name", "Estimate"]]))
    return DisplayContent(
        headline=f"Generalized linear mixed-effects model fit by {by}",
        counts=[
            ("Number of observations", model.num_observations),
            ("Fixed effects coefficients", model.num_coefficients),
            ("Random effects coefficients", model.num_random_effects),
            ("Covariance parameters", model.num_covariance_parameters),
        ],
        labels=[
            ("Distribution", model._ws.dist.display),
            ("Link", model._ws.link.display),
            ("FitMethod", fm),
        ],
        formula=model.formula,
        criterion=model.model_criterion,
        coefficients=model.coefficients,
        groups=groups,
        warnings=list(model._result.warnings),
    )


def fit_method_label(model) -> str:
    """The fit method as the display names it: 'Laplace', 'MPL', 'Quadrature (n_agq = 9)', ..."""
    label = METHODS[model.fit_method].display
    if model.fit_method == "quadrature":  # the number of nodes is part of the method
        label += f" (n_agq = {model._settings.n_agq})"
    return label


def model_display(model) -> str:
    """MATLAB's ``disp(glme)``: the text of :func:`display_content`."""
    c = display_content(model)
    out = [c.headline, "", "Model information:"]
    for label, value in c.counts:
        out.append(f"{_INDENT}{label:<32}{value:>6d}")
    for label, value in c.labels:
        out.append(f"{_INDENT}{label:<32}{value:<6}")
    out += ["", "Formula:", *_wrap_formula(c.formula), "", "Model fit statistics:"]
    out += format_table(c.criterion)
    out += ["", "Fixed effects coefficients (95% CIs):"]
    out += format_table(c.coefficients)
    out += ["", "Random effects covariance parameters:"]
    for k, (heading, subtitle, table) in enumerate(c.groups):
        out += ([""] if k else []) + [heading] + ([_INDENT + subtitle] if subtitle else [])
        out += format_table(table)
    if c.warnings:
        out += [""] + [f"Warning: {w}" for w in c.warnings]
    return "\n".join(out) + "\n"


def _html_cell(v, numeric: bool) -> str:
    if numeric:
        return f'<td style="text-align:right">{html.escape(_num(v))}</td>'
    return f"<td>{html.escape(str(v))}</td>"


def html_table(df: pd.DataFrame) -> str:
    """A DataFrame as an HTML table, numbers with the text display's 5 significant digits."""
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        rows.append("<tr>" + "".join(_html_cell(v, n) for v, n in zip(row, numeric)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def model_html(model) -> str:
    """Jupyter's rich display (``_repr_html_``): the content of :func:`model_display` as HTML."""
    c = display_content(model)
    e = html.escape
    info = "".join(f'<tr><th style="text-align:left">{e(k)}</th><td>{v:d}</td></tr>' for k, v in c.counts)
    info += "".join(f'<tr><th style="text-align:left">{e(k)}</th><td>{e(v)}</td></tr>' for k, v in c.labels)
    parts = [
        f'<div class="ppl-glmm-model"><p><strong>{e(c.headline)}</strong></p>',
        f"<p>Model information:</p><table><tbody>{info}</tbody></table>",
        f"<p>Formula:</p><p><code>{e(c.formula)}</code></p>",
        "<p>Model fit statistics:</p>" + html_table(c.criterion),
        "<p>Fixed effects coefficients (95% CIs):</p>" + html_table(c.coefficients),
        "<p>Random effects covariance parameters:</p>",
    ]
    for heading, subtitle, table in c.groups:
        parts.append(
            f"<p>{e(heading)}</p>" + (f"<p>{e(subtitle)}</p>" if subtitle else "") + html_table(table)
        )
    for w in c.warnings:
        parts.append(f"<p><strong>Warning:</strong> {e(w)}</p>")
    parts.append("</div>")
    return "\n".join(parts)
