"""Model design: the rows used, the response on its MATLAB scale, X, and the random-effects blocks.

``build_design`` validates every data argument before any work, excludes rows with missing values
(counted, never silently) and rows named in ``exclude``, and never modifies the caller's DataFrame.
It refuses, naming the column and the rows: non-finite values in X, in a random term's columns, in
the response, weights, binomial sizes or offsets (NaN in the data is "missing", as in MATLAB;
infinite values, or NaN made by a transform such as ``np.log(0)``, are refused); a constant response;
a grouping factor with one level; a normal model with as many random effects as observations in a
term (lme4's identifiability checks); separation, i.e. a fixed effect whose ML estimate is infinite
(see :mod:`.separation`); duplicate column names; and mixed-type categorical columns that would
merge levels (see :mod:`.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formulae
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import GLMMWarning, InputError, InputTypeError, warn
from ..families import Distribution
from ..formula import ParsedFormula, quote_name
from .checks import (
    aligned,
    as_vector,
    check_columns,
    check_finite,
    evaluate_offsets,
    formulae_reason,
    normalize_levels,
    offset_variables,
    rows_text,
    rows_where,
    vector_input,
)
from .fixed import Encoder, FixedDesign, UsedRows, build_fixed, categorical_columns
from .random import RandomTerm, build_random_term, group_codes, z_matrix

__all__ = [
    "Design",
    "RandomTerm",
    "build_design",
    "check_new_data",
    "check_new_response",
    "check_random_effects_count",
    "new_data_design",
]


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
    predictors: tuple[str, ...] = ()  # data columns the right-hand side uses (offset terms included)
    text_levels: frozenset = frozenset()  # mixed-type columns whose levels are the values' text
    # the input table (a copy: MATLAB's Variables, ObservationNames) and the prior weights as given,
    # one per input row (MATLAB's ObservationInfo.Weights); None for a design of new data
    data: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    input_weights: np.ndarray | None = field(default=None, repr=False, compare=False)
    # the data's complete separation by fixed and random effects (judged after the fit), or None
    group_separation: str | None = field(default=None, repr=False, compare=False)

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

    def used_index(self) -> pd.Index:
        """The labels of the used rows in the input table (its positions for a design without it),
        which messages about a row name, as ``fitglme``'s do."""
        return self.full_index()[self.subset]

    def full_index(self) -> pd.Index:
        """The labels of every row of the input table (its positions for a design without it)."""
        return self.data.index if self.data is not None else pd.RangeIndex(self.subset.size)

    def per_row(self, value, arg: str):
        """``value`` as given, or, for a Series, matched by label (:func:`.checks.aligned`) to the
        rows of the data (n_total values) or to the used rows (n values)."""
        value = vector_input(value, arg)
        if not isinstance(value, pd.Series):
            return value
        if len(value) == self.subset.size:
            return aligned(value, self.full_index(), arg)
        if len(value) != self.n:
            return value
        return aligned(value, self.used_index(), arg, "the rows used", reindex=None)

    def detached(self) -> Design:
        """A copy without formulae's design object (it references modules, so it cannot be pickled):
        everything a PyMC model is built from, but no ``new_data_design``."""
        from dataclasses import replace

        return replace(
            self,
            fixed=replace(self.fixed, matrices=None, frame=None),
            terms=tuple(replace(t, matrices=None) for t in self.terms),
        )


def _var_names(rhs: str, df: pd.DataFrame, arg: str) -> set[str]:
    try:
        names = set(formulae.model_description(rhs).var_names)
    except Exception as err:
        raise InputError(f"{arg}: cannot parse '{rhs}': {err}") from err
    return {v for v in names if v in df.columns}


def _vector_arg(value, data: pd.DataFrame, arg: str, default: float, rows: str = "data") -> np.ndarray:
    """One value per row of ``data`` (called ``rows`` in messages): from a column name, an array,
    or a Series matched to the rows by its index (:func:`.checks.aligned`); ``default`` if None."""
    n = len(data)
    if value is None:
        return np.full(n, default, dtype=float)
    if isinstance(value, str):
        if value not in data.columns:
            raise InputError(f"{arg}: column '{value}' not found in {rows}")
        value = data[value]
    value = aligned(vector_input(value, arg), data.index, arg, rows, f"{rows}.index")
    _refuse_text(value, arg, data.index)
    objects = isinstance(value, (pd.Series, np.ndarray)) and value.dtype == object
    if objects or isinstance(value, (list, tuple)):  # None and pd.NA mark a row missing, as NaN
        value = [np.nan if v is None or v is pd.NA else v for v in value]
    if np.iscomplexobj(value):
        raise InputTypeError(f"{arg}: holds complex numbers; give real values")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"{arg}: expected numbers (an array with one value per row, or a column name), "
            f"got {type(value).__name__} with non-numeric values"
        ) from None
    arr = as_vector(arr, arg)
    if arr.size == 1 and n != 1:
        arr = np.full(n, float(arr[0]))
    if arr.size != n:
        raise InputError(
            f"{arg}: expected {n} values (one per row of {rows}) or a column name, got {arr.size}"
        )
    return arr


def _refuse_text(value, arg: str, index: pd.Index | None = None) -> None:
    """Text values are refused, as MATLAB refuses them (NumPy would parse '2' as 2.0); the row is
    named by its label in ``index`` when there is one value per row."""
    raw = np.asarray(value)
    if raw.dtype.kind not in "OUS":
        return
    raw = raw.ravel()
    text = [k for k, v in enumerate(raw) if isinstance(v, (str, bytes))]
    if text:
        named = isinstance(value, pd.Series) and isinstance(value.name, str)
        where = f"column '{value.name}' holds" if named else "holds"
        k = text[0]
        at = f"in row {index[k]}" if index is not None and len(index) == raw.size else f"at position {k}"
        raise InputTypeError(
            f"{arg}: {where} text (e.g. {str(raw[k])!r} {at}); give numbers, e.g. convert the column "
            "with pd.to_numeric"
        )


def _exclude_mask(exclude, index: pd.Index) -> np.ndarray:
    n = len(index)
    mask = np.zeros(n, dtype=bool)
    if exclude is None:
        return mask
    exclude = vector_input(exclude, "exclude")
    if isinstance(exclude, pd.Series) and pd.api.types.is_bool_dtype(exclude):
        exclude = aligned(exclude, index, "exclude")  # a mask by row label (positions are values)
    if pd.isna(pd.Series(np.asarray(exclude, dtype=object).reshape(-1), dtype=object)).any():
        raise InputError(
            "exclude: holds missing values (None, NaN or pd.NA); give a boolean mask without them "
            "(e.g. mask.fillna(False)) or integer row positions"
        )
    arr = as_vector(np.asarray(exclude), "exclude")
    if arr.size == 0:  # (an empty list is float to NumPy)
        return mask
    if arr.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in arr):
        arr = arr.astype(bool)  # (booleans held as objects)
    if arr.dtype == bool:
        if arr.size != n:
            raise InputError(f"exclude: a boolean mask needs {n} values, got {arr.size}")
        return arr.copy()
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError("exclude: give a boolean mask or integer row positions (0-based)")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise InputError(f"exclude: row positions must be in 0..{n - 1}")
    values, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):  # e.g. a 0/1 mask of integers, read as the positions 0 and 1
        j = int(np.argmax(counts))
        raise InputError(
            f"exclude: row position {values[j]} is given {counts[j]} times; positions name each "
            "excluded row once (for a 0/1 mask pass booleans, e.g. np.asarray(mask, dtype=bool))"
        )
    mask[arr] = True
    return mask


def _infinite_arg(arr: np.ndarray, arg: str, index: pd.Index, missing_note: bool = True) -> None:
    """Refuse infinite values of ``arg``, naming the rows. ``missing_note``: say that NaN marks a
    row missing (true of a fit's data; new data must give every value)."""
    bad = np.isinf(arr)
    if bad.any():
        note = " (NaN marks a row as missing)" if missing_note else ""
        raise InputError(
            f"{arg}: infinite values in {rows_text(index[np.flatnonzero(bad)])}; give finite values{note}"
        )


def _is_logical(s: pd.Series) -> bool:
    """A logical column: bool or boolean dtype, or objects or categories that are all booleans
    (the same levels "false" < "true" whichever way the column holds them: an object column of
    True/False gave levels 'False'/'True', and predict refused the bool column of a fit)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    if isinstance(s.dtype, pd.CategoricalDtype):
        return len(s.cat.categories) > 0 and pd.api.types.infer_dtype(s.cat.categories) == "boolean"
    return s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) == "boolean"


def _as_logical_text(s: pd.Series) -> pd.Series:
    """A logical column's values as "true"/"false" (missing values kept)."""
    return s.astype(object).map({True: "true", False: "false"})


_SORT_MAX_ROWS = 1000  # text columns up to this length are sorted by NumPy, longer ones factorized


def _ordered_categories(s: pd.Series) -> pd.Categorical:
    """``s`` as an ordered categorical of the levels present: a categorical's own order, else
    sorted (logical values as "false" < "true", whatever their dtype)."""
    if _is_logical(s):
        s = _as_logical_text(s)
        return pd.Categorical(s, categories=[c for c in ("false", "true") if c in set(s)], ordered=True)
    if isinstance(s.dtype, pd.CategoricalDtype):
        # (rebuilding from the values with fewer categories warns, in pandas 3.1, that it will raise)
        return pd.Categorical(s.cat.remove_unused_categories()).as_ordered()
    if len(s) <= _SORT_MAX_ROWS and (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
        # text of a small table: NumPy's sort of the values gives the sorted levels and the codes
        # at once (180 rows: 0.07 against factorize's 0.13 ms); it compares Python strings one
        # by one, so on larger tables factorize's hashing wins (10,000 rows: 6.4 against 0.4 ms;
        # 100,000: 137 against 2.3 ms). Values Python cannot order go to factorize too
        try:
            uniques, codes = np.unique(s.to_numpy(dtype=object), return_inverse=True)
        except TypeError:
            pass
        else:
            # the categories factorize gives: the column's string dtype, or object strings as str
            cats = pd.Index(uniques.tolist()) if s.dtype == object else pd.Index(uniques, dtype=s.dtype)
            dtype = pd.CategoricalDtype(cats, ordered=True)
            return pd.Categorical.from_codes(codes.reshape(-1), dtype=dtype, validate=False)
    # sorted levels and codes in one hashing pass (as sorted(s.unique()), then recoding)
    codes, uniques = pd.factorize(s, sort=True)
    # the Index as it is (a list is re-inferred: 17x slower); object strings become str, as
    # a list of them would
    cats = uniques.tolist() if uniques.dtype == object else uniques
    return pd.Categorical.from_codes(codes, categories=cats, ordered=True)


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
    link=None,
) -> Design:
    """The design on the rows used; ``link`` (a Link) enables the separation check."""
    if not isinstance(data, pd.DataFrame):
        raise InputTypeError(f"data: expected a pandas DataFrame, got {type(data).__name__}")
    check_columns(data)
    if formula.response not in data.columns:
        raise InputError(f"formula: response '{formula.response}' is not a column of data")
    n_total = len(data)
    fixed_vars = _var_names(formula.fixed, data, "formula")
    _check_interaction_names(fixed_vars)
    offset_vars = offset_variables(formula.offsets, data.columns)
    random_vars: set[str] = set()
    for spec in formula.random:
        for g in spec.group_vars:
            if g not in data.columns:
                raise InputError(f"formula: grouping variable '{g}' in {spec} is not a column of data")
        random_vars |= set(spec.group_vars)
        if spec.expr:
            random_vars |= _var_names(spec.expr, data, "formula")
    _check_intercept_name(fixed_vars | random_vars)
    if binomial_size is not None and dist.name != "binomial":
        raise InputError("binomial_size: only valid with distribution='binomial'")
    size = _vector_arg(binomial_size, data, "binomial_size", 1.0)
    w = _vector_arg(weights, data, "weights", 1.0)
    input_weights = w.copy()
    off = _vector_arg(offset, data, "offset", 0.0)
    for arr, arg in ((size, "binomial_size"), (w, "weights"), (off, "offset")):
        _infinite_arg(arr, arg, data.index)
    excluded = _exclude_mask(exclude, data.index)

    used_cols = sorted({formula.response} | fixed_vars | random_vars | offset_vars)
    full = {c: data[c] for c in used_cols}  # column by column: no DataFrame of them is indexed
    for c, col in full.items():
        _check_scalar_values(col, c)
    missing = np.zeros(n_total, dtype=bool)
    for col in full.values():
        missing |= col.isna().to_numpy()
    missing |= ~np.isfinite(size) | ~np.isfinite(w) | ~np.isfinite(off)
    subset = ~missing & ~excluded
    if not subset.any():
        raise InputError(
            f"data: no rows left to fit ({int(missing.sum())} with missing values, "
            f"{int(excluded.sum())} excluded)"
        )
    index = data.index[subset]
    rows = None if subset.all() else np.flatnonzero(subset)
    # the used rows of each used column, as new Series (data is never modified); the frame that
    # formulae reads is made once they are final
    cols = {c: (col if rows is None else col.iloc[rows]).reset_index(drop=True) for c, col in full.items()}
    cols = {c: wide_integers(col) for c, col in cols.items()}
    size, w, off = size[subset], w[subset], off[subset]
    check_weights_and_size(w, size, dist, index, "exclude those rows instead")
    if formula.offsets:
        off = off + evaluate_offsets(formula.offsets, pd.DataFrame(cols), index)

    cat_cols = categorical_columns(cols, fixed_vars | random_vars)
    categories, text_levels = {}, set()
    for c in cat_cols:
        col, converted = normalize_levels(cols[c], c)
        if converted:
            text_levels.add(c)
        levels = _ordered_categories(col)
        cols[c] = pd.Series(levels, copy=False)
        categories[c] = list(levels.categories)
    df = UsedRows(cols, int(subset.sum()))
    grouping_only = (
        {v for spec in formula.random for v in spec.group_vars}
        - fixed_vars
        - {v for spec in formula.random if spec.expr for v in _var_names(spec.expr, data, "formula")}
    )
    for c in cat_cols:
        if c not in grouping_only and len(categories[c]) < 2:
            level = categories[c][0] if categories[c] else None
            raise InputError(
                f"formula: factor '{c}' has a single level ({level!r}) in the {len(df)} rows used, "
                "so it has no effect to estimate; drop it from the formula (or check exclude and "
                "missing values)"
            )
    encoder = Encoder(cat_cols, coding)

    raw = cols[formula.response]
    if pd.api.types.is_bool_dtype(raw) or (
        raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=False) == "boolean"
    ):  # (an object column of True/False: a logical column read with missing values)
        raw = raw.astype(float)
    if not pd.api.types.is_numeric_dtype(raw):
        example = raw.iloc[0].item() if isinstance(raw.iloc[0], np.generic) else raw.iloc[0]
        raise InputError(
            f"formula: response '{formula.response}' must be numeric (or logical), got dtype "
            f"{raw.dtype} with values such as {example!r}; convert it to numbers (0/1 or counts for a "
            "binomial response)"
        )
    y = raw.to_numpy(dtype=float)
    check_finite(
        y[:, None], [formula.response], "formula: response", index, "remove those rows or correct them"
    )
    if dist.name == "binomial":
        # MATLAB's rule: w n y whole, y = counts / n, i.e. counts x weights whole (w = 2, counts 0.5)
        k = y * w
        bad = np.abs(k - np.rint(k)) > np.sqrt(np.finfo(float).eps) * np.maximum(1, np.abs(k))
        if binomial_size is None and np.any(bad | (y < 0) | (y > 1)):
            raise InputError(
                "binomial_size: the binomial response holds values other than 0/1 (or, with weights "
                "w, multiples of 1/w in [0, 1]); give the number of trials per row "
                "(binomial_size=array or column name) with success counts as response"
            )
        out = (y < 0) | (y > size)
        if np.any(out):
            rows = rows_where(out, index)
            raise InputError(
                f"formula: binomial response '{formula.response}' must hold success counts "
                f"in 0..binomial_size, and does not in {rows}"
            )
        if np.any(bad):
            rows = rows_where(bad, index)
            raise InputError(
                f"formula: binomial response '{formula.response}' must hold success counts (whole "
                f"numbers in 0..binomial_size; with weights w, counts times w whole) when "
                f"binomial_size is given, and does not in {rows}; pass the counts, not proportions"
            )
        y = y / size
    dist.check_response(y, w, size, f"formula: response '{formula.response}'", index)
    _check_constant_response(y, dist, f"response '{formula.response}'")

    fixed = build_fixed(formula.fixed, df, encoder)
    if fixed.X.shape[1] == 0:
        raise InputError("formula: the model has no fixed effects; add '1 +' for an intercept")
    _check_distinct_names(fixed.names)
    check_finite(
        fixed.X,
        fixed.names,
        "formula: fixed-effects column",
        index,
        "remove or correct those rows, or change the transform (e.g. np.log(x + 1) for x >= 0)",
    )
    rank = np.linalg.matrix_rank(fixed.X)
    if rank < fixed.X.shape[1]:
        _refuse_offcentre_columns(fixed)
        raise InputError(
            f"formula: the fixed-effects design is rank deficient (rank {rank} < {fixed.X.shape[1]} "
            f"columns: {', '.join(fixed.names)}); remove redundant terms (with dummy_var_coding='full' "
            "drop the intercept with '0 +')"
        )
    terms, offset_b = [], 0
    for spec in formula.random:
        term = build_random_term(spec, df, encoder)
        check_finite(
            term.T,
            term.names,
            f"formula: column of random term {spec}:",
            index,
            "remove or correct those rows, or change the transform",
        )
        terms.append(_with_offset(term, offset_b))
        offset_b += term.size
    _check_grouping(terms, len(df), dist)
    if dist.name == "normal":
        _check_exact_fit(fixed, terms, y, formula.response)
    group_separation = None
    if link is not None:
        group_separation = _check_separation(fixed, y, w, size, dist, link, index, terms=tuple(terms))
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
        excluded=excluded,
        encoder=encoder,
        categories=categories,
        predictors=tuple(sorted(fixed_vars | random_vars | offset_vars)),
        text_levels=frozenset(text_levels),
        data=data.copy(),
        input_weights=input_weights,
        group_separation=group_separation,
    )


def check_new_response(design: Design, dist: Distribution, link, y: np.ndarray, arg: str) -> str | None:
    """The checks on a response that ``build_design`` makes, for a new response (``refit``); returns
    the text of a complete separation by fixed and random effects (judged after the fit) or None."""
    _check_constant_response(y, dist, arg)
    if dist.name == "normal":
        _check_exact_fit(design.fixed, design.terms, y, arg)
    index = design.used_index()
    return _check_separation(
        design.fixed, y, design.weights, design.binomial_size, dist, link, index, arg, design.terms
    )


def _check_constant_response(y: np.ndarray, dist: Distribution, name: str) -> None:
    """lme4's 'Response is constant' (normal); all failures, all successes or all zero counts."""
    if y.size == 0 or np.ptp(y) > 0:
        return
    v = float(y[0])
    if dist.name == "normal":
        what = f"every value is {v:g}; a normal model needs variation in the response"
    elif dist.name == "binomial" and v in (0.0, 1.0):
        what = f"every trial is a {'success' if v else 'failure'}, so the linear predictor is infinite"
    elif dist.has_dispersion:
        what = f"every value is {v:g}; a {dist.name} model needs variation in the response"
    elif dist.name in ("poisson", "negative_binomial") and v == 0.0:
        what = "every count is 0, so the linear predictor is -infinity"
    else:
        return
    head = (
        f"formula: Response is constant: {name}"
        if name.startswith("response")
        else f"{name}: Response is constant"
    )
    raise InputError(f"{head}: {what}; check that the right column (and rows, see exclude) are used")


def _check_grouping(terms: list[RandomTerm], n: int, dist: Distribution) -> None:
    """lme4's checks: every grouping factor has > 1 level; for a model with a dispersion, fewer
    levels and fewer random effects than observations (otherwise the residual variance is
    unidentifiable)."""
    for t in terms:
        group = ":".join(quote_name(v) for v in t.spec.group_vars)
        if t.n_levels < 2:
            raise InputError(
                f"formula: grouping factor '{group}' in {t.spec} has a single level "
                f"({t.levels[0]!r}) in the {n} rows used; a random effect needs at least 2 levels "
                f"(lme4: grouping factors must have > 1 sampled level); drop the term, or use a "
                "grouping variable with several levels"
            )
        if not dist.has_dispersion:
            continue  # (more random effects than rows: check_random_effects_count, with the patterns)
        if t.n_levels >= n:
            raise InputError(
                f"formula: grouping factor '{group}' in {t.spec} has {t.n_levels} levels for {n} "
                f"observations; in a {dist.name} model the number of levels of each grouping factor must "
                "be < number of observations (lme4), or the residual and random-effect variances "
                "cannot be told apart; drop the term or use a coarser grouping"
            )
        if t.size >= n:
            raise InputError(
                f"formula: random term {t.spec} has {t.size} random effects ({t.n_levels} levels x "
                f"{t.q_r} columns) for {n} observations; in a {dist.name} model they must be fewer than "
                "the observations (lme4: the random-effects parameters and the residual variance "
                "are probably unidentifiable); simplify the term, e.g. (1 | g)"
            )


_EXACT_FIT_MAX_COLUMNS = 500


def check_random_effects_count(design: Design, patterns) -> None:
    """glmer's check.nobs.vs.nRE for a term with an unstructured covariance (or one column): no more
    random effects than observations ((x | obs) has 2 n; (1 | obs), n, is an observation-level term,
    and a patterned term (Diagonal, CompSymm, ...) has few parameters, as glmmTMB fits them)."""
    n = design.n
    for t, pattern in zip(design.terms, patterns.terms):
        if t.size > n and (t.q_r == 1 or pattern.kind in ("FullCholesky", "Full")):
            raise InputError(
                f"formula: random term {t.spec} has {t.size} random effects ({t.n_levels} levels x "
                f"{t.q_r} columns) for {n} observations; they must not outnumber the observations "
                "(lme4: the random-effects parameters are probably unidentifiable); simplify the "
                "term, e.g. (1 | g), or give it a covariance_pattern with fewer parameters"
            )


def _check_exact_fit(fixed: FixedDesign, terms, y: np.ndarray, name: str) -> None:
    """Normal model: refuse a response that the fixed and random effects reproduce exactly (e.g.
    constant within every level of the grouping factor): the residual variance estimate is then 0
    and the likelihood unbounded. Least squares on [X Z] by its normal equations (sparse Z), for up
    to 500 columns (a few ms; with more levels an exact fit is implausible)."""
    n = len(y)
    q = sum(t.size for t in terms)
    if fixed.X.shape[1] + q > _EXACT_FIT_MAX_COLUMNS:
        return
    X, Z = fixed.X, z_matrix(tuple(terms), n).tocsc()
    ZtX = np.asarray(Z.T @ X)
    G = np.block([[X.T @ X, ZtX.T], [ZtX, (Z.T @ Z).toarray()]])
    coef = np.linalg.lstsq(G, np.r_[X.T @ y, Z.T @ y], rcond=1e-12)[0]
    p = X.shape[1]
    resid = y - X @ coef[:p] - Z @ coef[p:]
    scale = max(float(np.max(np.abs(y - y.mean()))), 1e-300)
    if float(np.max(np.abs(resid))) <= 1e-8 * scale:
        groups = ", ".join(str(t.spec) for t in terms)
        raise InputError(
            f"{'ynew' if name == 'ynew' else f'formula: response {name!r}'} is fitted exactly by the "
            "fixed effects and the random "
            f"effects {groups} (for example, it is constant within every level of the grouping "
            "factor), so the residual variance is estimated as 0 and the normal likelihood has no "
            "maximum; check the response, or use fewer or coarser random-effects terms"
        )


_SEPARATION_LINKS = {
    "binomial": ("logit", "probit", "comploglog", "loglog"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
}


def _check_complete_with_groups(fixed: FixedDesign, terms, y, m, arg: str) -> str | None:
    """The refusal's text when the fixed effects and the levels of the random terms together
    predict every binomial response exactly (:func:`.separation.find_complete_separation_with_groups`),
    else None. The Laplace likelihood then has no finite maximum, but it may have a local one
    (crossed terms with few rows per level: lme4 and glmmTMB report it), so the fit decides
    (:func:`judge_group_separation`)."""
    from .separation import find_complete_separation_with_groups, may_separate_completely

    k = np.rint(y * m)
    if not may_separate_completely(k, m):  # decided before Z is built (most data: a row with both)
        return None
    dz = find_complete_separation_with_groups(fixed.X, z_matrix(tuple(terms), len(y)), k, m)
    if dz is None:
        return None
    groups = [str(t.spec) for t in terms if np.any(dz[t.offset : t.offset + t.size] != 0)]
    return (
        f"{arg}: complete separation by the fixed and random effects together: every response is "
        "predicted exactly by the fixed effects and the levels of "
        f"{', '.join(groups) or 'the random terms'}"
    )


# A fit of completely separated data whose conditional means are all within this of the responses
# ran toward the separation (the estimate is infinite); one that is not found a local maximum.
SEPARATED_FIT = 0.05


def judge_group_separation(message: str | None, y: np.ndarray, mu: np.ndarray) -> None:
    """After a fit of data that the fixed and random effects together separate completely
    (``message`` from :func:`_check_complete_with_groups`): refuse the fit when it ran toward the
    separation (every conditional mean within :data:`SEPARATED_FIT` of its response: the variance
    runs to infinity, e.g. SD 123 and |beta| 25 on 6 rows), else warn that the estimate is a local
    maximum. The Laplace likelihood tends to its supremum along the separating direction (the
    variances and coefficients growing together), which a fit need not follow: crossed Bernoulli
    data with 150 rows on 60 x 40 levels ended at SDs 2.1 and 2.9, the point glmer and glmmTMB
    report (logLik -89.0769 against glmmTMB's -89.0769)."""
    if message is None:
        return
    if float(np.max(np.abs(np.asarray(y) - np.asarray(mu)), initial=0.0)) < SEPARATED_FIT:
        raise InputError(
            f"{message}, so the likelihood keeps increasing as the random-effects variance grows "
            "(its estimate is infinite: the fit ran toward it, fitting every response to within "
            f"{SEPARATED_FIT}); use more data, fewer or coarser random-effects terms, or a model with "
            "fewer fixed effects"
        )
    warn(
        f"{message}. The Laplace likelihood has no finite maximum (it grows toward its supremum "
        "as the variances and coefficients grow together); this fit is a local maximum away from "
        "that direction, the point lme4 and glmmTMB report. Check it against a model with fewer "
        "random-effects terms",
        GLMMWarning,
    )


def _check_separation(
    fixed: FixedDesign,
    y,
    w,
    size,
    dist: Distribution,
    link,
    index,
    arg: str = "data",
    terms: tuple = (),
) -> str | None:
    """Refuse fixed effects whose ML estimate is infinite (separation in the fixed-effects design);
    return the text of a complete separation by fixed and random effects together, which the fit
    decides (:func:`judge_group_separation`), or None."""
    from .separation import find_separation

    if link.name not in _SEPARATION_LINKS.get(dist.name, ()):
        return None
    if dist.name == "binomial":
        m = w * size
        sep = find_separation(fixed.X, np.rint(y * m), m, "binomial")
    else:
        sep = find_separation(fixed.X, np.rint(y * w), None, "poisson")
    if sep is None:
        if dist.name == "binomial" and terms:
            return _check_complete_with_groups(fixed, terms, y, w * size, arg)
        return None
    cols = [fixed.names[j] for j in np.flatnonzero(sep.direction)]
    rows = index[np.flatnonzero(sep.rows)]
    if dist.name == "binomial":
        kind = "complete separation" if sep.complete else "quasi-complete separation"
        what = (
            f"a combination of the columns {', '.join(cols)} separates the outcomes: it is > 0 only "
            "where every trial succeeded and < 0 only where every trial failed"
        )
    else:
        kind = "separation of zero counts"
        what = (
            f"a combination of the columns {', '.join(cols)} is < 0 only where the count is 0 and 0 elsewhere"
        )
    one = len(cols) == 1
    raise InputError(
        f"{arg}: {kind} in the fixed effects: {what} ({rows_text(rows)}; {len(rows)} rows "
        f"predicted exactly), so the maximum-likelihood estimate{'' if one else 's'} of "
        f"{'that coefficient is' if one else 'those coefficients are'} infinite (lme4 stops with "
        "'pwrssUpdate did not converge' or gives huge estimates); random effects do not make "
        f"{'it' if one else 'them'} finite. Remove or merge those columns or factor levels, or drop "
        "those rows"
    )


_MAX_COUNT = 2.0**53  # trials (and weights x sizes) above this are not integers in float64


def check_weights_and_size(w: np.ndarray, size: np.ndarray, dist: Distribution, index, fix: str) -> None:
    """MATLAB's rules: positive weights (integers for the count families), positive integer
    binomial sizes; rows named by ``index``."""
    if np.any(w <= 0):
        raise InputError(
            f"weights: prior weights must be positive, and are not in "
            f"{rows_text(index[np.flatnonzero(w <= 0)])} ({fix})"
        )
    if dist.counts and np.any(np.abs(w - np.rint(w)) > 0):
        raise InputError(
            f"weights: {dist.name} prior weights must be positive integers, and are not in "
            f"{rows_text(index[np.flatnonzero(np.abs(w - np.rint(w)) > 0)])}"
        )
    bad = (size <= 0) | (np.abs(size - np.rint(size)) > 0)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise InputError(
            f"binomial_size: must be positive integers, and are not in {rows_text(index[rows])} "
            f"(first: {float(size[rows[0]]):g}; {fix})"
        )
    trials = w * size  # (binomial: the trials of a row)
    big = trials > _MAX_COUNT if dist.name == "binomial" else np.zeros(len(size), dtype=bool)
    if np.any(big):
        what = "binomial_size times the weight" if np.any(w[big] != 1) else "binomial_size"
        raise InputError(
            f"binomial_size: {what} exceeds 2^53 "
            f"(the largest count held exactly) in {rows_text(index[np.flatnonzero(big)])} (first: "
            f"{float(trials[np.flatnonzero(big)[0]]):g}); a binomial with that many trials is "
            "normal to rounding: model the proportions with fewer trials"
        )


def _check_scalar_values(col: pd.Series, name: str) -> None:
    """Refuse a column of complex numbers (cut silently to their real part) or of containers
    (lists, tuples, sets as group ids raised pandas' own TypeError or NotImplementedError)."""
    if pd.api.types.is_complex_dtype(col.dtype):
        raise InputTypeError(f"data: column '{name}' holds complex numbers; give real values")
    if col.dtype != object:
        return
    kind = pd.api.types.infer_dtype(col, skipna=True)
    if kind == "complex":
        raise InputTypeError(f"data: column '{name}' holds complex numbers; give real values")
    if kind in ("mixed", "unknown-array"):
        bad = next((v for v in col if isinstance(v, (list, tuple, set, frozenset, dict, np.ndarray))), None)
        if bad is not None:
            raise InputTypeError(
                f"data: column '{name}' holds {type(bad).__name__} values such as {bad!r}; a column of "
                f"the formula needs numbers or labels (e.g. data['{name}'] = data['{name}'].astype(str))"
            )


def _check_intercept_name(used: set[str]) -> None:
    """Refuse a column named 'Intercept' in the fixed or random part: formulae names its intercept
    term so, and the column silently became (or replaced) the intercept."""
    if "Intercept" in used:
        raise InputError(
            "formula: column 'Intercept' has the name formulae gives the intercept, which it silently "
            "took the column for (the column was dropped or replaced the intercept); rename the "
            "column (e.g. data.rename(columns={'Intercept': 'Intercept_'}))"
        )


def _refuse_offcentre_columns(fixed: FixedDesign) -> None:
    """Where a rank-deficient X is of full rank once its columns are centred and scaled, the
    deficiency is numerical: a column whose mean dwarfs its spread (x = 1e7 + noise, a Unix time)
    is the intercept to rounding. Name those columns and the fix."""
    X = fixed.X
    centre = X.mean(axis=0)
    spread = X.std(axis=0)
    varying = spread > 0
    if varying.all() or not varying.any():  # (no constant column, the intercept: nothing to centre)
        return
    Xc = X.copy()
    Xc[:, varying] = (X[:, varying] - centre[varying]) / spread[varying]
    if np.linalg.matrix_rank(Xc) < X.shape[1]:
        return
    off = varying & (np.abs(centre) > 1e6 * spread)
    cols = [fixed.names[j] for j in np.flatnonzero(off)] or [fixed.names[j] for j in np.flatnonzero(varying)]
    raise InputError(
        f"formula: fixed-effects column(s) {', '.join(cols)}: the mean is so large next to the spread "
        "that, to rounding, the column is a multiple of the intercept (the design is numerically "
        "rank deficient); "
        "centre or rescale it, e.g. data.assign(x=data.x - data.x.mean()), or (x - x0) / unit"
    )


def _check_interaction_names(fixed_vars: set[str]) -> None:
    """Refuse a column named like an interaction of other columns of the fixed part (`x:z` beside
    x and z): formulae keys terms by name, and the column silently replaced the product x z."""
    for v in sorted(fixed_vars):
        parts = v.split(":")
        if len(parts) > 1 and all(p in fixed_vars for p in parts):
            raise InputError(
                f"formula: column '{v}' has the name of the interaction of {', '.join(parts)}: formulae "
                "takes one for the other (the column replaced the product x z of x*z); rename the "
                "column (e.g. data.rename(columns="
                f"{{'{v}': '{v.replace(':', '_')}'}}))"
            )


def _check_distinct_names(names: list[str]) -> None:
    """Refuse two fixed-effects columns of one name (a data column named '(Intercept)', or 'f_b'
    beside a factor f with level b): tables, coef_test and compare address coefficients by name,
    and the default coef_test left the user's column out."""
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise InputError(
            f"formula: two fixed-effects coefficients would both be named {', '.join(map(repr, repeated))} "
            "(a column named like the intercept or like a factor's level column); rename that column"
        )


def wide_integers(s: pd.Series) -> pd.Series:
    """An integer column narrower than int64, or unsigned, as int64 (float64 for uint64 values
    above int64's range). Formula transforms compute in the column's dtype: I(x - 3) of a uint8
    column wrapped to 253, and offset(0.1 * (x - 3)) with it, silently."""
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dt):
        return s
    if not pd.api.types.is_integer_dtype(dt) or dt == np.int64:
        return s
    if s.isna().any():  # (new data with missing values is refused later, naming the rows)
        return s
    if str(dt).lower().startswith("uint64") and len(s) and int(s.max()) > np.iinfo(np.int64).max:
        return s.astype("float64")
    return s.astype("int64")


def check_new_data(newdata) -> None:
    """Refuse what no method can evaluate: not a DataFrame, duplicate column names, no rows."""
    if not isinstance(newdata, pd.DataFrame):
        raise InputTypeError(f"newdata: expected a pandas DataFrame, got {type(newdata).__name__}")
    check_columns(newdata, "newdata")
    if len(newdata) == 0:
        raise InputError("newdata: has no rows; pass at least one row to evaluate")


def _check_new_dtypes(design: Design, newdata: pd.DataFrame) -> None:
    """A predictor numeric in the fit must be numeric in ``newdata`` (not text or logical)."""
    grouping = {v for t in design.terms for v in t.spec.group_vars}
    for v in design.predictors:
        if v in design.categories or v in grouping or v not in newdata.columns:
            continue
        s = newdata[v]
        if pd.api.types.is_complex_dtype(s):
            raise InputTypeError(f"newdata: column '{v}' holds complex numbers; give real values")
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            example = s.iloc[0] if len(s) else None
            raise InputTypeError(
                f"newdata: column '{v}' is numeric in the fitted data but has dtype {s.dtype} here "
                f"(values such as {example!r}); convert it, e.g. newdata['{v}'] = "
                f"pd.to_numeric(newdata['{v}'])"
            )


def new_data_design(
    design: Design,
    newdata: pd.DataFrame,
    *,
    weights=None,
    binomial_size=None,
    offset=None,
    dist: Distribution | None = None,
) -> Design:
    """Design for simulating at new rows (MATLAB ``random(glme, tblnew)``).

    X uses the fitted coding; categorical predictors must use levels seen in the fit. Grouping
    levels are taken from ``newdata`` afresh (every level gets a new random effect). Weights,
    binomial sizes and offset default to 1, 1 and 0; with ``dist`` (a simulation) they are checked
    as ``fitglme`` checks them, and every value must be finite.
    """
    check_new_data(newdata)
    _check_new_dtypes(design, newdata)
    if dist is not None and binomial_size is not None and dist.name != "binomial":
        raise InputError("binomial_size: only valid with distribution='binomial'")
    w = _vector_arg(weights, newdata, "weights", 1.0, "newdata")
    size = _vector_arg(binomial_size, newdata, "binomial_size", 1.0, "newdata")
    if dist is not None:
        for arr, arg in ((w, "weights"), (size, "binomial_size")):
            _infinite_arg(arr, arg, newdata.index, missing_note=False)
            if np.isnan(arr).any():
                raise InputError(f"{arg}: contains NaN; give a value for every row of newdata")
        check_weights_and_size(w, size, dist, newdata.index, "remove those rows of newdata")
    for v in design.predictors:
        if v not in newdata.columns:
            raise InputError(f"newdata: column '{v}' is missing")
    df = newdata[list(design.predictors)].reset_index(drop=True).copy()
    na = df.isna().to_numpy()
    if na.any():
        cols = [str(c) for c, bad in zip(df.columns, na.any(axis=0)) if bad]
        raise InputError(
            f"newdata: missing values in column(s) {', '.join(repr(c) for c in cols)} of the model, in "
            f"{rows_text(newdata.index[np.flatnonzero(na.any(axis=1))])}; remove those rows or give values"
        )
    for c in df.columns:
        df[c] = wide_integers(df[c])
    grouping = {v for t in design.terms for v in t.spec.group_vars}
    for c in grouping:  # levels named as the fit names them, so that they match by name
        if _is_logical(df[c]):  # "false"/"true", whichever way the column holds them
            df[c] = _as_logical_text(df[c])
        elif c in design.text_levels:  # the fit's mixed-type column: its values' text
            df[c] = df[c].map(str)
        else:
            df[c], _ = normalize_levels(df[c], c)
    for c in design.text_levels - grouping:
        df[c] = df[c].map(str)
    for c, cats in design.categories.items():
        if c in grouping:  # grouping levels are taken afresh from newdata
            continue
        vals = _as_logical_text(df[c]) if _is_logical(df[c]) else df[c]
        unknown = set(vals.unique()) - set(cats)
        if unknown:
            hint = ""
            if pd.api.types.is_numeric_dtype(vals) and all(isinstance(v, str) for v in cats):
                hint = (
                    f" (it is {vals.dtype} here, while the fit's levels are text: convert it, e.g. "
                    f"newdata['{c}'] = newdata['{c}'].astype(str))"
                )
            raise InputError(
                f"newdata: column '{c}' has levels not seen in the fit: {sorted(map(str, unknown))}{hint}"
            )
        # unordered: formulae's C() takes an ordered column's categories as the levels present and
        # refuses rows that hold only some of them; the fitted terms keep the levels and coding
        df[c] = pd.Categorical(vals, categories=cats)
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # refused below
            X = np.asarray(design.fixed.model_matrices().evaluate_new_data(df).design_matrix, dtype=float)
    except Exception as err:
        raise InputError(f"newdata: cannot evaluate the fixed effects: {formulae_reason(err)}") from err
    fixed = FixedDesign(X=X, names=design.fixed.names, rhs=design.fixed.rhs, matrices=design.fixed.matrices)
    check_finite(
        X, fixed.names, "newdata: fixed-effects column", newdata.index, "remove or correct those rows"
    )
    n = len(df)
    off = _vector_arg(offset, newdata, "offset", 0.0, "newdata")
    _infinite_arg(off, "offset", newdata.index, missing_note=False)
    if np.isnan(off).any():
        raise InputError("offset: contains NaN; give a value for every row of newdata")
    if design.formula.offsets:
        off = off + evaluate_offsets(design.formula.offsets, df, newdata.index, "newdata")
    terms, start = [], 0
    for t in design.terms:
        T = t.evaluate_new_data(design.fixed.frame, df)
        check_finite(
            T,
            t.names,
            f"newdata: column of random term {t.spec}",
            newdata.index,
            "remove or correct those rows",
        )
        codes, levels, parts = group_codes(df, t.spec.group_vars)
        new = RandomTerm(
            spec=t.spec, names=t.names, levels=levels, codes=codes, T=T, rhs=t.rhs, level_parts=parts
        )
        terms.append(_with_offset(new, start))
        start += new.size
    return Design(
        formula=design.formula,
        fixed=fixed,
        terms=tuple(terms),
        y=np.zeros(n),
        weights=w,
        binomial_size=size,
        offset=off,
        subset=np.ones(n, dtype=bool),
        missing=np.zeros(n, dtype=bool),
        excluded=np.zeros(n, dtype=bool),
        encoder=design.encoder,
        categories=design.categories,
        predictors=design.predictors,
        text_levels=design.text_levels,
    )


def _with_offset(term: RandomTerm, offset: int) -> RandomTerm:
    from dataclasses import replace

    return replace(term, offset=offset)
