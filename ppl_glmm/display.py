"""MATLAB's ``disp(glme)`` layout for a fitted model.

Numbers use 5 significant digits (MATLAB ``format short g``). In a numeric column the values are
right-aligned among themselves and the block is left-aligned under the header; text columns show
``{'name'}`` padded inside the braces. Columns are separated by 4 spaces, text columns by 8.
"""

from __future__ import annotations

import pandas as pd

from .fit_methods import METHODS

__all__ = ["format_table", "model_display"]

_INDENT = "    "


def _num(v) -> str:
    if isinstance(v, float) and v != v:
        return "NaN"
    return f"{float(v):.5g}"


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


def model_display(model) -> str:
    """MATLAB's headline says how the model was fitted: 'ML' (Laplace, ApproximateLaplace,
    quadrature), 'PL' (pseudo-likelihood: MPL, REMPL); 'REML' for the restricted likelihood.

    A term whose covariance pattern is not the default (FullCholesky; Isotropic for one column)
    gets a ``Covariance Type: <type>`` line under its ``Group:`` line (the title of MATLAB's
    covarianceParameters table); default terms show none, so default displays are unchanged."""
    method = METHODS[model.fit_method]
    by = "PL" if method.pseudo else "REML" if method.restricted else "ML"
    fm = method.display
    if model.fit_method == "quadrature":  # the number of nodes is part of the method
        fm += f" (n_agq = {model._settings.n_agq})"
    out = [f"Generalized linear mixed-effects model fit by {by}", "", "Model information:"]
    for label, value in [
        ("Number of observations", model.num_observations),
        ("Fixed effects coefficients", model.num_coefficients),
        ("Random effects coefficients", model.num_random_effects),
        ("Covariance parameters", model.num_covariance_parameters),
    ]:
        out.append(f"{_INDENT}{label:<32}{value:>6d}")
    for label, value in [
        ("Distribution", model._ws.dist.display),
        ("Link", model._ws.link.display),
        ("FitMethod", fm),
    ]:
        out.append(f"{_INDENT}{label:<32}{value:<6}")
    out += ["", "Formula:", _INDENT + model.formula, "", "Model fit statistics:"]
    out += format_table(model.model_criterion)
    out += ["", "Fixed effects coefficients (95% CIs):"]
    out += format_table(model.coefficients)
    out += ["", "Random effects covariance parameters:"]
    psi_tables = model._covariance_tables(alpha=None)
    for term, pattern, table in zip(model._ws.design.terms, model._ws.patterns.terms, psi_tables[:-1]):
        out.append(f"Group: {term.group} ({term.n_levels} Levels)")
        if not pattern.is_default:  # MATLAB's table title, shown when a pattern was chosen
            out.append(f"{_INDENT}{table.attrs['title']}")
        out += format_table(table[["Name1", "Name2", "Type", "Estimate"]])
        out.append("")
    out.append("Group: Error")
    out += format_table(psi_tables[-1][["Name", "Estimate"]])
    warn = [w for w in model._result.warnings]
    if warn:
        out += [""] + [f"Warning: {w}" for w in warn]
    return "\n".join(out) + "\n"
