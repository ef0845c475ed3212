"""Parse lme4/Wilkinson mixed-model formulas into a fixed part and random-effects terms.

``y ~ 1 + x + (1 + x | g) + (1 | g1:g2) + (1 | a/b)`` is split into the response ``y``, the
fixed-effects right-hand side ``1 + x`` (handed to formulae) and one :class:`RandomTermSpec` per
covariance block. ``(1 | a/b)`` expands to ``(1 | a) + (1 | a:b)``; ``(1 + x || g)`` to the
uncorrelated blocks ``(1 | g) + (0 + x | g)``. formulae cannot express correlated blocks, so the
bar terms are parsed here.

Names with spaces are written in backticks, in the fixed part and in the grouping part alike:
``y ~ `dose mg` + (1 | `g id`)``. ``offset(expr)`` terms are taken out of the fixed part (they add to
the linear predictor with coefficient 1, as in lme4) and kept in :attr:`ParsedFormula.offsets`.

R spellings that would silently mean something else, or fail deep inside formulae, are refused here
with the Python spelling: ``^`` (write ``**``), ``log(x)`` and other bare math functions outside
``offset()`` (write ``np.log(x)``), a ``cbind(successes, failures)`` response (use
``binomial_size``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError, InputTypeError

__all__ = ["ParsedFormula", "RandomTermSpec", "parse_formula", "quote_name"]


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects block ``(expr | group)`` with its own q_r x q_r covariance."""

    expr: str  # columns of the block, without intercept tokens, e.g. "x" or "" for (1|g)
    intercept: bool
    group_vars: tuple[str, ...]  # ("g1", "g2") for g1:g2

    @property
    def group(self) -> str:
        return ":".join(self.group_vars)

    def __str__(self) -> str:
        lhs = " + ".join((["1"] if self.intercept else ["0"]) + ([self.expr] if self.expr else []))
        return f"({lhs} | {':'.join(quote_name(v) for v in self.group_vars)})"


def quote_name(name: str) -> str:
    """``name`` as written in a formula: in backticks unless it is a plain identifier."""
    return name if _IDENT.match(name) else f"`{name}`"


@dataclass(frozen=True)
class ParsedFormula:
    text: str
    response: str
    fixed: str  # right-hand side of the fixed part, formulae syntax
    random: tuple[RandomTermSpec, ...]
    offsets: tuple[str, ...] = ()  # expressions of the offset(...) terms, e.g. "np.log(e)"


def _outside_ticks(text: str):
    """(character, inside backticks) pairs: names in backticks may hold any character."""
    tick = False
    for ch in text:
        if ch == "`":
            tick = not tick
            yield ch, True
        else:
            yield ch, tick


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` characters outside parentheses and backticks."""
    out, depth, cur = [], 0, []
    for ch, tick in _outside_ticks(text):
        if not tick and ch == "(":
            depth += 1
        elif not tick and ch == ")":
            depth -= 1
            if depth < 0:
                raise InputError("formula: unbalanced parentheses")
        if ch == sep and depth == 0 and not tick:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise InputError("formula: unbalanced parentheses")
    out.append("".join(cur))
    return out


def _signed_terms(rhs: str) -> list[tuple[str, str]]:
    """Top-level additive terms of ``rhs`` as (sign, text) pairs."""
    terms, depth, cur, sign = [], 0, [], "+"
    for ch, tick in _outside_ticks(rhs):
        if not tick and ch == "(":
            depth += 1
        elif not tick and ch == ")":
            depth -= 1
        if not tick and ch in "+-" and depth == 0:
            if "".join(cur).strip():
                terms.append((sign, "".join(cur).strip()))
            elif ch == "-" and sign == "+":
                pass
            cur, sign = [], ch
            continue
        cur.append(ch)
    if "".join(cur).strip():
        terms.append((sign, "".join(cur).strip()))
    return terms


def _untick(text: str) -> str:
    """``text`` with every backticked name blanked out (for checks on the formula's syntax)."""
    return "".join("_" if tick else ch for ch, tick in _outside_ticks(text))


# R's math functions: formulae evaluates calls in Python, where they are numpy's.
_R_FUNCTIONS = ("log", "log10", "log2", "log1p", "exp", "expm1", "sqrt", "abs", "sin", "cos", "tan")
_BARE_CALL = re.compile(rf"(?<![\w.])({'|'.join(_R_FUNCTIONS)})\s*\(")
_OFFSET = re.compile(r"^offset\s*\((.*)\)$", re.S)


def _check_syntax(part: str) -> None:
    """Refuse R spellings in a fixed or random-effects expression, with the Python spelling."""
    plain = _untick(part)
    if "^" in plain:
        raise InputError(
            f"formula: '^' in '{part.strip()}' is not Python syntax; write '**' for crossing "
            "((a + b)**2 is a + b + a:b, as R's (a + b)^2) or I(x**2) / np.power(x, 2) for a power"
        )
    m = _BARE_CALL.search(plain)
    if m:
        raise InputError(
            f"formula: '{m.group(1)}(...)' in '{part.strip()}' is not defined in formulas; write "
            f"np.{m.group(1)}(...) (numpy is available as np; bare log, exp, sqrt, log1p, expm1, log2 "
            "and log10 are accepted only inside offset())"
        )


_IDENT = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$")  # a letter (any script), _ or ., then letters, digits, _ or .


def _group_name(v: str, inner: str) -> str:
    v = v.strip()
    if len(v) > 2 and v.startswith("`") and v.endswith("`") and "`" not in v[1:-1]:
        return v[1:-1]
    if not _IDENT.match(v):
        raise InputError(
            f"formula: grouping variable '{v}' in '({inner})' is not a column name; give a column "
            "(in backticks if it has spaces, e.g. (1 | `g id`)), or make the grouping a column of data"
        )
    return v


def _parse_bar(inner: str) -> list[RandomTermSpec]:
    double = "||" in inner
    parts = inner.split("||") if double else _split_top(inner, "|")
    if len(parts) != 2:
        raise InputError(f"formula: random term '({inner})' must have exactly one '|'")
    lhs, grp = parts[0].strip(), parts[1].strip()
    if not lhs:
        raise InputError(
            f"formula: random term '({inner})' has nothing before the bar; write '(1|{grp})' for a "
            "random intercept"
        )
    intercept, cols = True, []
    for sign, term in _signed_terms(lhs):
        if term in ("0", "-1") or (sign == "-" and term == "1"):
            intercept = False
        elif term == "1":
            intercept = True
        elif sign == "-":
            raise InputError(f"formula: cannot remove '{term}' in random term '({inner})'")
        elif _OFFSET.match(term):
            raise InputError(
                f"formula: offset() inside the random term '({inner})'; put it in the fixed part"
            )
        else:
            cols.append(term)
    _check_syntax(lhs)
    if not grp:
        raise InputError(f"formula: random term '({inner})' has no grouping variable")
    nested = [g.strip() for g in _split_top(grp, "/")]
    groups: list[tuple[str, ...]] = []
    for k in range(len(nested)):
        vars_ = tuple(_group_name(v, inner) for part in nested[: k + 1] for v in _split_top(part, ":"))
        groups.append(vars_)
    specs = []
    for g in groups:
        if double:
            if intercept:
                specs.append(RandomTermSpec("", True, g))
            specs.extend(RandomTermSpec(c, False, g) for c in cols)
        else:
            if not intercept and not cols:
                raise InputError(f"formula: random term '({inner})' has no columns")
            specs.append(RandomTermSpec(" + ".join(cols), intercept, g))
    return specs


_BOOL_LITERAL = re.compile(r"(?<![\w.`])(True|False)(?![\w`])")  # outside backticks


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, fixed right-hand side, random-effects blocks and offsets."""
    if not isinstance(formula, str):
        raise InputTypeError(
            f"formula: expected a string 'response ~ terms', e.g. 'y ~ 1 + x + (1|g)', "
            f"got {type(formula).__name__}"
        )
    if "~" not in formula:
        raise InputError("formula: expected a string 'response ~ terms', e.g. 'y ~ 1 + x + (1|g)'")
    _split_top(formula, "~")  # raises on unbalanced parentheses
    if re.sub(r"`[^`]*`", "", formula).count("~") > 1:
        raise InputError(
            f"formula: '{formula}' has more than one '~'; give one response and one right-hand side, "
            "e.g. 'y ~ 1 + x + (1|g)'"
        )
    lhs, rhs = formula.split("~", 1)
    literal = _BOOL_LITERAL.search(re.sub(r"`[^`]*`", "``", rhs))
    if literal:
        word = literal.group(0)
        raise InputError(
            f"formula: '{word}' in '{rhs.strip()}' is Python's constant {word}, not a column (it was "
            f"read as a constant: an intercept, a dropped term or an offset of {int(word == 'True')}); "
            f"for a column named {word} write `{word}` in backticks, or rename the column"
        )
    response = lhs.strip()
    if not response:
        raise InputError("formula: the response (left of '~') is missing")
    if re.match(r"^cbind\s*\(", response):
        raise InputError(
            f"formula: a '{response}' response (successes and failures) is R syntax; give the "
            "successes as the response and the trials as binomial_size, e.g. "
            "fitglme(data.assign(n=data.s + data.f), 's ~ ...', distribution='binomial', "
            "binomial_size='n')"
        )
    if len(response) > 2 and response.startswith("`") and response.endswith("`"):
        response = response[1:-1]
    fixed_terms: list[str] = []
    random: list[RandomTermSpec] = []
    offsets: list[str] = []
    intercept = True
    for sign, term in _signed_terms(rhs):
        off = _OFFSET.match(term)
        if term.startswith("(") and term.endswith(")") and "|" in _untick(term):
            if sign == "-":
                raise InputError(f"formula: a random term cannot be subtracted: '{term}'")
            random.extend(_parse_bar(term[1:-1]))
        elif off:
            if sign == "-":
                raise InputError(f"formula: write '+ offset(-...)' instead of '- {term}'")
            if not off.group(1).strip():
                raise InputError("formula: offset() needs an expression, e.g. offset(np.log(exposure))")
            offsets.append(off.group(1).strip())
        elif term == "0" or (sign == "-" and term == "1"):
            intercept = False
        elif term == "1":
            intercept = True
        else:
            _check_syntax(term)
            fixed_terms.append(("- " if sign == "-" else "+ ") + term)
    fixed = ("1 " if intercept else "0 ") + " ".join(fixed_terms)
    return ParsedFormula(formula.strip(), response, fixed.strip(), tuple(random), tuple(offsets))
