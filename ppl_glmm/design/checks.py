"""Checks on the data that refuse a model before any fitting work, naming the column, the rows or
values, and the fix; and the evaluation of ``offset(...)`` terms of the formula.

Rows are named by the caller's DataFrame index labels (``data.index``), which are row positions for
a default RangeIndex.

Choices:

* **Mixed types in a categorical column** (an object column holding, say, ints and strings): the
  values are converted to their text, ``str(v)``, so ``1`` and ``'a'`` become levels ``'1'`` and
  ``'a'`` in text order. Two distinct values with the same text (``1`` and ``'1'``) are refused,
  since merging them silently would change the model.
* **Offsets in the formula**: ``offset(expr)`` is evaluated in Python on the rows used, with the
  data's columns as variables and numpy as ``np``; for porting lme4 formulas, ``log``, ``exp``,
  ``sqrt``, ``log1p``, ``expm1``, ``log2`` and ``log10`` are also accepted bare inside ``offset()``
  (numpy's functions). Several offsets, and the ``offset=`` argument, add up.
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError

__all__ = [
    "aligned",
    "check_columns",
    "check_finite",
    "evaluate_offsets",
    "formulae_reason",
    "normalize_levels",
    "offset_variables",
    "real_values",
    "rows_text",
    "vector_input",
]

_OFFSET_FUNCTIONS = {
    "log": np.log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "log2": np.log2,
    "log10": np.log10,
}
_MODULES = {"np": np, "numpy": np}
# no builtins but the import NumPy's methods make at run time (x.mean() failed with '__import__')
_EVAL_GLOBALS = {"__builtins__": {"__import__": __import__}}
_CALLABLES = {**_MODULES, **_OFFSET_FUNCTIONS}  # what an offset expression may call
_TICKED = re.compile(r"`([^`]+)`")


def rows_where(mask: np.ndarray, index) -> str:
    """rows_text of the rows where ``mask`` holds: their labels in ``index``, else positions."""
    pos = np.flatnonzero(mask)
    if index is None:
        return rows_text(pos)
    return rows_text(index[pos] if isinstance(index, pd.Index) else np.asarray(index)[pos])


def rows_text(labels, limit: int = 5) -> str:
    """'rows 3, 7, 12' or 'rows 3, 7, 12, 18, 25 and 9 more' (data index labels)."""
    labels = list(labels)
    shown = ", ".join(str(v) for v in labels[:limit])
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return f"row{'s' if len(labels) > 1 else ''} {shown}{more}"


def formulae_reason(err: Exception) -> str:
    """formulae's error as a sentence: a KeyError/NameError is an unknown name in the formula."""
    if isinstance(err, (KeyError, NameError)):
        name = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        return (
            f"unknown name {name!r}: not a column of data nor a function (use np.<function>, "
            "e.g. np.log; names with spaces go in backticks)"
        )
    return str(err)


def vector_input(value, arg: str):
    """A per-row argument as given, except: a one-column DataFrame is its column (a Series, so it is
    matched to the rows by label like one: read by position it paired values with the wrong rows);
    a table of several columns, a masked array with masked entries (NumPy ignores the mask) and
    dates or durations (NumPy reads nanoseconds) are refused."""
    if isinstance(value, pd.DataFrame):
        if value.shape[1] != 1:
            raise InputError(
                f"{arg}: expected a vector (one value per row), got a table of {value.shape[1]} "
                f"columns; pass one column, e.g. table['name']"
            )
        return value.iloc[:, 0]
    if isinstance(value, np.ma.MaskedArray):
        masked = int(np.ma.getmaskarray(value).sum())
        if masked:
            raise InputError(
                f"{arg}: a masked array with {masked} masked entr{'y' if masked == 1 else 'ies'}; masks "
                "are not read (their values would be used): fill them, e.g. value.filled(np.nan), or "
                "leave those rows out (exclude=)"
            )
        return np.asarray(value.data)
    dtype = getattr(value, "dtype", None)
    if isinstance(value, (list, tuple)):
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):  # (ragged: refused as not numeric by the caller)
            dtype = None
    if getattr(dtype, "kind", None) in ("m", "M"):
        raise InputTypeError(
            f"{arg}: holds dates or durations; give numbers (e.g. durations in days: "
            "value / pd.Timedelta(days=1))"
        )
    return value


def as_vector(arr: np.ndarray, arg: str) -> np.ndarray:
    """``arr`` as a 1-D vector: a column or row vector (n x 1, 1 x n) is one; a table is refused,
    never flattened."""
    if arr.ndim > 1 and sorted(arr.shape)[-2] != 1:
        raise InputError(f"{arg}: expected a vector (one value per row), got an array of shape {arr.shape}")
    return arr.reshape(-1)


def real_values(value, arg: str, expected: str = "numbers") -> np.ndarray:
    """``value`` as a float array, refusing complex numbers (NumPy would drop the imaginary part)
    and text (NumPy would parse '2' as 2.0), as ``fitglme`` refuses them in its own arguments; any
    other value NumPy cannot read as floats (a dict, ragged lists) is an InputTypeError saying
    ``{arg}: expected {expected}``."""
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            raise InputTypeError(f"{arg}: holds complex numbers; give real values")
        if raw.dtype.kind in "US" or (
            raw.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in raw.reshape(-1))
        ):
            raise InputTypeError(f"{arg}: holds text; give numbers, e.g. convert them with pd.to_numeric")
        return np.asarray(raw, dtype=float)
    except InputTypeError:
        raise
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"{arg}: expected {expected}, got {type(value).__name__}") from err


def aligned(value, index: pd.Index, arg: str, rows: str = "data", reindex: str | None = "data.index"):
    """``value`` in the order of ``index`` when it is a pandas Series: as given when its index is
    ``index``; reordered by label when it holds the same labels in another order (as pandas aligns);
    refused when its labels are other labels (a filtered data frame's weights given with a fresh
    RangeIndex, say) or repeat, where reading it by position would pair values with the wrong rows
    silently. Anything else (arrays, lists, a Series of one value or of another length, which the
    caller's length check names) is returned unchanged. ``rows`` names the rows in messages and
    ``reindex`` is the expression of their index for the fix (None: no such expression)."""
    if not isinstance(value, pd.Series) or len(value) == 1 or value.index.equals(index):
        return value
    if len(value) != len(index):
        return value
    by_position = f"pass {arg}.to_numpy() to take its values by position"
    if not (value.index.is_unique and index.is_unique):
        whose = "the Series'" if not value.index.is_unique else f"the index of {rows}"
        raise InputError(
            f"{arg}: the Series' index does not match the index of {rows}, and {whose} labels repeat, "
            f"so its values cannot be matched to the rows by label; {by_position}"
        )
    pos = value.index.get_indexer(index)
    if (pos >= 0).all():
        return value.iloc[pos]
    label = index[np.flatnonzero(pos < 0)[0]]
    fix = f"reindex it as {rows} ({arg}.reindex({reindex})), or {by_position}" if reindex else by_position
    raise InputError(
        f"{arg}: the Series' index does not match the index of {rows} (it has no value for row "
        f"{label}); {fix}"
    )


def check_columns(data: pd.DataFrame, arg: str = "data") -> None:
    """Refuse duplicated column names (``data[name]`` would be a table, not a column) and
    hierarchical (MultiIndex) columns, which the formula cannot name."""
    if isinstance(data.columns, pd.MultiIndex):
        raise InputError(
            f"{arg}: has hierarchical (MultiIndex) columns, which a formula cannot name; flatten "
            f"them first, e.g. {arg}.columns = ['_'.join(map(str, c)) for c in {arg}.columns]"
        )
    if data.columns.is_unique:  # (cached by pandas on the Index: no hashing per fit)
        return
    dup = data.columns[data.columns.duplicated()]
    if len(dup):
        names = ", ".join(repr(c) for c in dict.fromkeys(dup))
        raise InputError(
            f"{arg}: duplicate column names {names}; rename them so each column has its own name "
            "(e.g. data.columns = [...] or data.loc[:, ~data.columns.duplicated()])"
        )


def normalize_levels(s: pd.Series, column: str) -> tuple[pd.Series, bool]:
    """``s`` with mixed-type values (unorderable, e.g. ints and strings) converted to text.

    Returns the series and whether it was converted."""
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype != object:
        return s, False
    values = s.dropna().unique().tolist()
    if len({type(v) for v in values}) <= 1:
        return s, False
    try:
        sorted(values)
        return s, False
    except TypeError:
        pass
    text: dict[str, list] = {}
    for v in values:
        text.setdefault(str(v), []).append(v)
    clash = {k: v for k, v in text.items() if len(v) > 1}
    if clash:
        k, vs = next(iter(clash.items()))
        raise InputError(
            f"data: column '{column}' mixes types, and the values {', '.join(repr(v) for v in vs)} "
            f"would both become level '{k}'; make the column one type (e.g. data['{column}'] = "
            f"data['{column}'].astype(str)) after deciding whether they are the same level"
        )
    return s.map(lambda v: v if pd.isna(v) else str(v)), True


def check_finite(M: np.ndarray, names, what: str, index: pd.Index, fix: str) -> None:
    """Refuse NaN/inf in the columns of ``M`` (rows labelled by ``index``)."""
    bad = ~np.isfinite(M)
    if not bad.any():
        return
    j = int(np.flatnonzero(bad.any(axis=0))[0])
    rows = np.flatnonzero(bad[:, j])
    vals = sorted({str(v) for v in M[rows, j]})
    raise InputError(
        f"{what} '{names[j]}' has non-finite values ({', '.join(vals)}) in {rows_text(index[rows])}; {fix}"
    )


def _prepare_expression(expr: str) -> tuple[str, dict[str, str]]:
    """``expr`` with backticked names replaced by identifiers: (python text, identifier -> column)."""
    mapping: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        key = f"__col{len(mapping)}__"
        mapping[key] = m.group(1)
        return key

    return _TICKED.sub(sub, expr), mapping


def _parse_offset(expr: str) -> tuple[ast.Expression, dict[str, str]]:
    text, mapping = _prepare_expression(expr)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise InputError(
            f"formula: cannot read offset({expr}): {err.msg}; write a Python expression such as "
            "offset(np.log(exposure))"
        ) from None
    return tree, mapping


def offset_variables(exprs, columns) -> set[str]:
    """Data columns used by the ``offset(...)`` expressions."""
    out: set[str] = set()
    cols = set(columns)
    for expr in exprs:
        tree, mapping = _parse_offset(expr)
        for node, name in _data_names(tree, mapping):
            if name in cols:
                out.add(name)
            elif node.id in mapping:
                raise InputError(f"formula: column '{name}' in offset({expr}) is not a column of data")
    return out


def _data_names(tree: ast.Expression, mapping: dict[str, str]):
    """The Name nodes of ``tree`` that stand for data, with the column each names: all but a known
    function or module in a callee position (``log(...)``, ``np.log``), so that a column called
    ``np`` or ``log`` neither hides NumPy nor counts as a variable where it is the function."""
    callees = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):  # log(...), np.log(...)
            target, names = node.func, _CALLABLES
        elif isinstance(node, ast.Attribute):  # np.log: only the modules (a column exp keeps exp.max())
            target, names = node.value, _MODULES
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            callees.add(id(target))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in callees:
            yield node, mapping.get(node.id, node.id)


def evaluate_offsets(exprs, df: pd.DataFrame, index: pd.Index, arg: str = "formula") -> np.ndarray:
    """Sum of the ``offset(...)`` expressions on the rows of ``df`` (0 if there are none)."""
    total = np.zeros(len(df))
    for expr in exprs:
        tree, mapping = _parse_offset(expr)
        env: dict = dict(_CALLABLES)
        bound: dict[str, str] = {}  # column -> its identifier in env
        for node, name in list(_data_names(tree, mapping)):
            if name in df.columns:  # bound under its own identifier: a column 'np' leaves np.log alone
                node.id = bound.setdefault(name, f"__data{len(bound)}__")
                env[node.id] = df[name].to_numpy()
            elif node.id not in env:
                raise InputError(
                    f"{arg}: '{name}' in offset({expr}) is neither a column of data nor a "
                    "function; use a column name, np.<function>, or one of log, exp, sqrt, log1p, "
                    "expm1, log2, log10"
                )
        try:
            with np.errstate(all="ignore"):
                value = eval(compile(tree, "<offset>", "eval"), _EVAL_GLOBALS, env)
            value = np.asarray(value, dtype=float)
        except Exception as err:
            raise InputError(f"{arg}: cannot evaluate offset({expr}): {err}") from None
        if value.ndim == 0:
            value = np.full(len(df), float(value))
        value = value.reshape(-1)
        if value.size != len(df):
            raise InputError(
                f"{arg}: offset({expr}) gives {value.size} values for {len(df)} rows; it must give "
                "one value per row"
            )
        bad = ~np.isfinite(value)
        if bad.any():
            vals = sorted({str(v) for v in value[bad]})
            raise InputError(
                f"{arg}: offset({expr}) is not finite ({', '.join(vals)}) in "
                f"{rows_text(index[np.flatnonzero(bad)])}; "
                + (
                    "remove those rows from newdata"
                    if arg == "newdata"
                    else "remove those rows (exclude=...)"
                )
                + " or correct the values (e.g. a zero exposure under log)"
            )
        total = total + value
    return total
