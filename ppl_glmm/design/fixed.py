"""Fixed-effects design matrix X through formulae, with MATLAB's coding and coefficient names.

Dummy-variable coding (``dummy_var_coding``):

* ``reference``: the first level is the baseline (formulae's Treatment coding);
* ``effects``: sum-to-zero coding, the last level is coded -1 in every column (``Sum``);
* ``full``: one indicator per level (rank deficient next to an intercept).

Level order is a pandas Categorical's order, otherwise sorted. Names follow MATLAB: ``(Intercept)``,
``x``, ``supplier_B``, ``x:trt_trt``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import formulae
import numpy as np
import pandas as pd
from formulae.categorical import ContrastMatrix, Encoding, Sum
from formulae.environment import Environment

from ..errors import FitError, InputError
from .checks import formulae_reason

__all__ = ["Encoder", "FixedDesign", "build_fixed", "categorical_columns", "coefficient_name"]


class Full(Encoding):
    """All levels coded as indicators, with or without an intercept (MATLAB 'full')."""

    def code_with_intercept(self, levels: list) -> ContrastMatrix:
        return ContrastMatrix(np.eye(len(levels), dtype=int), [str(v) for v in levels])

    def code_without_intercept(self, levels: list) -> ContrastMatrix:
        return self.code_with_intercept(levels)


class Effects(Sum):
    """Sum-to-zero coding (last level -1); where a term must span the intercept (e.g. ``f:x``
    without ``f``), one indicator per level, as treatment coding does, rather than a 'mean' column."""

    def code_with_intercept(self, levels: list) -> ContrastMatrix:
        return Full().code_with_intercept(levels)


_ENCODING = {"reference": None, "effects": "Effects", "full": "Full"}
_CALL = re.compile(r"^C\(\s*([^,()]+?)\s*(?:,[^()]*)?\)\[(.+)\]$")
_LEVEL = re.compile(r"^(.+?)\[(.+)\]$")


def coefficient_name(label: str) -> str:
    """formulae column label -> MATLAB coefficient name (``C(s, Sum)[B]`` -> ``s_B``)."""
    if label == "Intercept":
        return "(Intercept)"
    parts = []
    for part in label.split(":"):
        m = _CALL.match(part) or _LEVEL.match(part)
        parts.append(f"{m.group(1)}_{m.group(2)}" if m else part)
    return ":".join(parts)


def categorical_columns(df: Mapping[str, pd.Series] | pd.DataFrame, names: set[str]) -> list[str]:
    """Columns among ``names`` that are treated as categorical (non-numeric dtypes); ``df`` is a
    DataFrame or a mapping of column names to Series."""
    return [
        c
        for c in names
        if c in df and (not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]


class _Uncopied:
    """A module in formulae's evaluation namespace: attribute access goes to the module, and copies
    are the object itself. formulae deep-copies the namespace when it adds a term (an interaction
    without its main effects under effects or full coding), and a module cannot be copied: the fit
    failed with formulae's 'cannot pickle 'module' object'."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name: str):
        return getattr(self._module, name)

    def __deepcopy__(self, memo: dict) -> _Uncopied:
        return self

    def __copy__(self) -> _Uncopied:
        return self


_NP = _Uncopied(np)


def formula_matrices(rhs: str, df) -> Any:
    """formulae's ``design_matrices`` of ``rhs`` on ``df`` evaluated in :attr:`Encoder.namespace`
    only. formulae's own default captures its caller's frame, here this module's globals with their
    modules (re, pandas, formulae), which it deep-copies when it adds a term for full rank (an
    interaction without its main effects under effects or full coding)."""
    env = Environment([]).with_outer_namespace(Encoder.namespace)
    return formulae.design_matrices(rhs, as_frame(df), na_action="error", env=env)


class Encoder:
    """Rewrite categorical variables ``v`` (and ``C(v)`` without a contrast) as ``C(v, Effects)`` /
    ``C(v, Full)`` for the chosen coding."""

    # formulae evaluates calls in this namespace alone (:func:`formula_matrices`): numpy as ``np``
    # (and ``numpy``), so that ``np.log(x)`` works, and the codings.
    namespace: ClassVar[dict] = {"Full": Full, "Effects": Effects, "np": _NP, "numpy": _NP}

    def __init__(self, cat_cols: list[str], coding: str):
        self.cat_cols, self.coding = list(cat_cols), coding

    def __call__(self, rhs: str) -> str:
        enc = _ENCODING[self.coding]
        if enc is None:
            return rhs
        rhs = re.sub(r"(?<![\w.])C\(\s*([A-Za-z_.][\w.]*)\s*\)", rf"C(\1, {enc})", rhs)
        for col in self.cat_cols:
            pattern = rf"(?<![\w.])(?<!C\()(?<!C\( ){re.escape(col)}(?![\w.(])"
            rhs = re.sub(pattern, f"C({col}, {enc})", rhs)
        return rhs


class UsedRows:
    """The used rows' columns (filtered, categorical columns coded) as the design reads them: by
    name, with ``columns`` and ``len`` (the rows). pandas' DataFrame of them, which only formulae
    needs (a transform, an interaction, another coding; new data), is built on first use
    (:func:`as_frame`): a model of main effects never builds it (~0.15 ms for 3-4 columns timed
    alone, more inside a fit)."""

    def __init__(self, cols: Mapping[str, pd.Series], n: int):
        self._cols = dict(cols)
        self._n = int(n)
        self._frame: pd.DataFrame | None = None

    def __getitem__(self, name: str) -> pd.Series:
        return self._cols[name]

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    def __len__(self) -> int:
        return self._n

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._cols)

    def frame(self) -> pd.DataFrame:
        if self._frame is None:  # two threads may both build it: the same frame
            self._frame = pd.DataFrame(self._cols)
        return self._frame

    def __getstate__(self) -> dict:
        return {"_cols": self._cols, "_n": self._n, "_frame": None}


def as_frame(df: pd.DataFrame | UsedRows) -> pd.DataFrame:
    """The DataFrame of ``df`` (a :class:`UsedRows` builds it once)."""
    return df.frame() if isinstance(df, UsedRows) else df


@dataclass(frozen=True)
class FixedDesign:
    """X with its coefficient names. ``matrices`` (formulae's design object, which evaluates the
    same terms on new data) cannot be pickled: pickles and deep copies keep ``frame``, the rows it
    was built from, and :meth:`model_matrices` rebuilds it on first use."""

    X: np.ndarray
    names: tuple[str, ...]
    rhs: str  # formulae right-hand side actually used (after coding)
    matrices: Any  # formulae CommonEffectsMatrix, for evaluate_new_data
    frame: pd.DataFrame | UsedRows | None = None  # the used rows X was built from

    def __getstate__(self) -> dict:
        return {**self.__dict__, "matrices": None}

    def model_matrices(self) -> Any:
        """formulae's design object, rebuilt from ``frame`` after unpickling."""
        if self.matrices is None:
            if self.frame is None:
                raise FitError("this design has no data to evaluate new rows with")
            dm = formula_matrices(self.rhs, self.frame)
            object.__setattr__(self, "matrices", dm.common)
        return self.matrices


_NAME = re.compile(r"^[A-Za-z_]\w*$")


def _main_effects(encoded: str, df: pd.DataFrame | UsedRows, encode: Encoder) -> FixedDesign | None:
    """X for a right-hand side of main effects only -- ``1``/``0``, numeric columns, and with an
    intercept text-level factors in reference coding -- built directly: the columns formulae
    gives (the intercept, each numeric column, one indicator per level after the first, in term
    order), at ~1/30 of its cost (~1.3 ms on 300 rows, most of a small fit's design time). Anything
    else (a transform, an interaction, a removed term, another coding) returns None and goes to
    formulae. formulae's own object is built from ``frame`` only if new data are evaluated."""
    tokens = [t.strip() for t in encoded.split("+")]
    if len(set(tokens)) != len(tokens) or not tokens:
        return None
    intercept = "0" not in tokens
    cols, labels = [np.ones(len(df))] if intercept else [], ["Intercept"] if intercept else []
    for tok in tokens:
        if tok in ("0", "1"):
            continue
        if not _NAME.match(tok) or tok not in df.columns:
            return None
        col = df[tok]
        if tok not in encode.cat_cols:
            if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                return None
            cols.append(col.to_numpy(dtype=float))
            labels.append(tok)
            continue
        if encode.coding != "reference" or not intercept or not isinstance(col.dtype, pd.CategoricalDtype):
            return None
        levels = col.cat.categories
        if not all(isinstance(v, str) for v in levels):
            return None
        codes = col.cat.codes.to_numpy()
        for j in range(1, len(levels)):
            cols.append((codes == j).astype(float))
            labels.append(f"{tok}[{levels[j]}]")
    if not cols:
        return None
    X = np.column_stack(cols)
    return FixedDesign(
        X=X, names=tuple(coefficient_name(lab) for lab in labels), rhs=encoded, matrices=None, frame=df
    )


def build_fixed(rhs: str, df: pd.DataFrame | UsedRows, encode: Encoder) -> FixedDesign:
    """Evaluate the fixed-effects right-hand side on the (already filtered, ordered) data."""
    encoded = encode(rhs)
    simple = _main_effects(encoded, df, encode)
    if simple is not None:
        return simple
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # build_design refuses them
            dm = formula_matrices(encoded, df)
    except Exception as err:  # formulae raises many types; name the argument for the user
        raise InputError(
            f"formula: cannot build the fixed-effects design from '{rhs}': {formulae_reason(err)}"
        ) from err
    if dm.common is None:  # '0 +' or '- 1' and nothing else
        raise InputError(
            f"formula: the model has no fixed effects ('{rhs}'); ppl_glmm needs at least one "
            "fixed-effect column: keep the intercept (drop '0 +' or '- 1') or add a predictor"
        )
    X = np.asarray(dm.common.design_matrix, dtype=float)
    labels = [lab for term in dm.common.terms.values() for lab in term.labels]
    names = tuple(coefficient_name(lab) for lab in labels)
    return FixedDesign(X=X, names=names, rhs=encoded, matrices=dm.common, frame=df)
