"""Model design: the rows used, the response on its MATLAB scale, X, and the random-effects blocks.

``build_design`` validates every data argument before any work, excludes rows with missing values
(counted, never silently) and rows named in ``exclude``, and never modifies the caller's DataFrame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formulae
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..families import Distribution
from ..formula import ParsedFormula
from .fixed import Encoder, FixedDesign, build_fixed, categorical_columns
from .random import RandomTerm, build_random_term, z_matrix

__all__ = ["Design", "RandomTerm", "build_design", "new_data_design"]


@dataclass(frozen=True)
class Design:
    """Everything the model needs from the data, on the used rows only."""

    formula: ParsedFormula
    fixed: FixedDesign
    terms: tuple[RandomTerm, ...]
    y: np.ndarray  # response on MATLAB's scale (proportions for binomial)
    weights: np.ndarray
    binomial_size: np.ndarray
    offset: np.ndarray
    subset: np.ndarray  # (n_total,) bool: rows used
    missing: np.ndarray  # (n_total,) bool: rows with missing values in a model variable
    excluded: np.ndarray  # (n_total,) bool: rows named in `exclude`
    encoder: Encoder
    categories: dict = field(default_factory=dict)  # column -> level order used
    predictors: tuple[str, ...] = ()  # data columns the right-hand side uses

    @property
    def X(self) -> np.ndarray:
        return self.fixed.X

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def q(self) -> int:
        return sum(t.size for t in self.terms)

    def Z(self) -> sp.csr_matrix:
        return z_matrix(self.terms, self.n)

    def detached(self) -> Design:
        """A copy without formulae's design object (it references modules, so it cannot be pickled):
        everything a PyMC model is built from, but no ``new_data_design``."""
        from dataclasses import replace

        return replace(self, fixed=replace(self.fixed, matrices=None, frame=None))


def _var_names(rhs: str, df: pd.DataFrame, arg: str) -> set[str]:
    try:
        names = set(formulae.model_description(rhs).var_names)
    except Exception as err:
        raise ValueError(f"{arg}: cannot parse '{rhs}': {err}") from err
    return {v for v in names if v in df.columns}


def _vector_arg(value, data: pd.DataFrame, arg: str, default: float) -> np.ndarray:
    n = len(data)
    if value is None:
        return np.full(n, default, dtype=float)
    if isinstance(value, str):
        if value not in data.columns:
            raise ValueError(f"{arg}: column '{value}' not found in data")
        value = data[value]
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size == 1 and n != 1:
        arr = np.full(n, float(arr[0]))
    if arr.size != n:
        raise ValueError(f"{arg}: expected {n} values (one per row of data) or a column name, got {arr.size}")
    return arr


def _exclude_mask(exclude, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if exclude is None:
        return mask
    arr = np.asarray(exclude).reshape(-1)
    if arr.dtype == bool:
        if arr.size != n:
            raise ValueError(f"exclude: a boolean mask needs {n} values, got {arr.size}")
        return arr.copy()
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("exclude: give a boolean mask or integer row positions (0-based)")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"exclude: row positions must be in 0..{n - 1}")
    mask[arr] = True
    return mask


def _ordered_categories(s: pd.Series) -> pd.Categorical:
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique())
        cats = [c for c in s.cat.categories if c in present]
    elif pd.api.types.is_bool_dtype(s):
        s = s.map({True: "true", False: "false"})
        cats = [c for c in ("false", "true") if c in set(s)]
    else:
        cats = sorted(s.dropna().unique().tolist())
    return pd.Categorical(s, categories=cats, ordered=True)


def build_design(
    data: pd.DataFrame,
    formula: ParsedFormula,
    dist: Distribution,
    *,
    coding: str,
    binomial_size=None,
    weights=None,
    offset=None,
    exclude=None,
) -> Design:
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data: expected a pandas DataFrame, got {type(data).__name__}")
    if formula.response not in data.columns:
        raise ValueError(f"formula: response '{formula.response}' is not a column of data")
    n_total = len(data)
    fixed_vars = _var_names(formula.fixed, data, "formula")
    random_vars: set[str] = set()
    for spec in formula.random:
        for g in spec.group_vars:
            if g not in data.columns:
                raise ValueError(f"formula: grouping variable '{g}' in {spec} is not a column of data")
        random_vars |= set(spec.group_vars)
        if spec.expr:
            random_vars |= _var_names(spec.expr, data, "formula")
    if binomial_size is not None and dist.name != "binomial":
        raise ValueError("binomial_size: only valid with distribution='binomial'")
    size = _vector_arg(binomial_size, data, "binomial_size", 1.0)
    w = _vector_arg(weights, data, "weights", 1.0)
    off = _vector_arg(offset, data, "offset", 0.0)
    excluded = _exclude_mask(exclude, n_total)

    used_cols = sorted({formula.response} | fixed_vars | random_vars)
    missing = data[used_cols].isna().any(axis=1).to_numpy().copy()
    missing |= ~np.isfinite(size) | ~np.isfinite(w) | ~np.isfinite(off)
    subset = ~missing & ~excluded
    if not subset.any():
        raise ValueError(
            f"data: no rows left to fit ({int(missing.sum())} with missing values, "
            f"{int(excluded.sum())} excluded)"
        )
    df = data.loc[subset, used_cols].reset_index(drop=True).copy()
    size, w, off = size[subset], w[subset], off[subset]
    if np.any(w <= 0):
        raise ValueError("weights: prior weights must be positive")
    if dist.name in ("binomial", "poisson") and np.any(np.abs(w - np.rint(w)) > 0):
        raise ValueError(f"weights: {dist.name} prior weights must be positive integers")
    if np.any(size <= 0) or np.any(np.abs(size - np.rint(size)) > 0):
        raise ValueError("binomial_size: must be positive integers")

    cat_cols = categorical_columns(df, fixed_vars | random_vars)
    categories = {}
    for c in cat_cols:
        df[c] = _ordered_categories(df[c])
        categories[c] = list(df[c].cat.categories)
    encoder = Encoder(cat_cols, coding)

    raw = df[formula.response]
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype(float)
    if not pd.api.types.is_numeric_dtype(raw):
        raise ValueError(f"formula: response '{formula.response}' must be numeric (or logical)")
    y = raw.to_numpy(dtype=float)
    if dist.name == "binomial":
        if binomial_size is None and np.any((y != 0) & (y != 1)):
            raise ValueError(
                "binomial_size: the binomial response holds values other than 0/1; give the number "
                "of trials per row (binomial_size=array or column name) with success counts as response"
            )
        if np.any((y < 0) | (y > size)):
            raise ValueError(
                f"formula: binomial response '{formula.response}' must hold success counts "
                "in 0..binomial_size"
            )
        y = y / size
    dist.check_response(y, w, size, f"response '{formula.response}'")

    fixed = build_fixed(formula.fixed, df, encoder)
    if fixed.X.shape[1] == 0:
        raise ValueError("formula: the model has no fixed effects; add '1 +' for an intercept")
    rank = np.linalg.matrix_rank(fixed.X)
    if rank < fixed.X.shape[1]:
        raise ValueError(
            f"formula: the fixed-effects design is rank deficient (rank {rank} < {fixed.X.shape[1]} "
            f"columns: {', '.join(fixed.names)}); remove redundant terms (with dummy_var_coding='full' "
            "drop the intercept with '0 +')"
        )
    terms, offset_b = [], 0
    for spec in formula.random:
        term = build_random_term(spec, df, encoder)
        terms.append(_with_offset(term, offset_b))
        offset_b += term.size
    return Design(
        formula=formula,
        fixed=fixed,
        terms=tuple(terms),
        y=y,
        weights=w,
        binomial_size=size,
        offset=off,
        subset=subset,
        missing=missing,
        excluded=excluded & ~missing,
        encoder=encoder,
        categories=categories,
        predictors=tuple(sorted(fixed_vars | random_vars)),
    )


def new_data_design(
    design: Design, newdata: pd.DataFrame, *, weights=None, binomial_size=None, offset=None
) -> Design:
    """Design for simulating at new rows (MATLAB ``random(glme, tblnew)``).

    X uses the fitted coding; categorical predictors must use levels seen in the fit. Grouping
    levels are taken from ``newdata`` afresh (every level gets a new random effect). Weights,
    binomial sizes and offset default to 1, 1 and 0.
    """
    if not isinstance(newdata, pd.DataFrame):
        raise ValueError(f"newdata: expected a pandas DataFrame, got {type(newdata).__name__}")
    for v in design.predictors:
        if v not in newdata.columns:
            raise ValueError(f"newdata: column '{v}' is missing")
    df = newdata[list(design.predictors)].reset_index(drop=True).copy()
    if df.isna().any().any():
        raise ValueError("newdata: contains missing values in model variables; remove those rows")
    grouping = {v for t in design.terms for v in t.spec.group_vars}
    for c, cats in design.categories.items():
        if c in grouping:  # grouping levels are taken afresh from newdata
            continue
        vals = df[c].map({True: "true", False: "false"}) if pd.api.types.is_bool_dtype(df[c]) else df[c]
        unknown = set(vals.unique()) - set(cats)
        if unknown:
            raise ValueError(
                f"newdata: column '{c}' has levels not seen in the fit: {sorted(map(str, unknown))}"
            )
        df[c] = pd.Categorical(vals, categories=cats, ordered=True)
    try:
        X = np.asarray(design.fixed.model_matrices().evaluate_new_data(df).design_matrix, dtype=float)
    except Exception as err:
        raise ValueError(f"newdata: cannot evaluate the fixed effects: {err}") from err
    fixed = FixedDesign(X=X, names=design.fixed.names, rhs=design.fixed.rhs, matrices=design.fixed.matrices)
    n = len(df)
    terms, start = [], 0
    for t in design.terms:
        new = build_random_term(t.spec, df, design.encoder)
        terms.append(_with_offset(new, start))
        start += new.size
    return Design(
        formula=design.formula,
        fixed=fixed,
        terms=tuple(terms),
        y=np.zeros(n),
        weights=_vector_arg(weights, newdata, "weights", 1.0),
        binomial_size=_vector_arg(binomial_size, newdata, "binomial_size", 1.0),
        offset=_vector_arg(offset, newdata, "offset", 0.0),
        subset=np.ones(n, dtype=bool),
        missing=np.zeros(n, dtype=bool),
        excluded=np.zeros(n, dtype=bool),
        encoder=design.encoder,
        categories=design.categories,
        predictors=design.predictors,
    )


def _with_offset(term: RandomTerm, offset: int) -> RandomTerm:
    from dataclasses import replace

    return replace(term, offset=offset)
