"""Parse lme4/Wilkinson mixed-model formulas into a fixed part and random-effects terms.

``y ~ 1 + x + (1 + x | g) + (1 | g1:g2) + (1 | a/b)`` is split into the response ``y``, the
fixed-effects right-hand side ``1 + x`` (handed to formulae) and one :class:`RandomTermSpec` per
covariance block. ``(1 | a/b)`` expands to ``(1 | a) + (1 | a:b)``; ``(1 + x || g)`` to the
uncorrelated blocks ``(1 | g) + (0 + x | g)``. formulae cannot express correlated blocks, so the
bar terms are parsed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ParsedFormula", "RandomTermSpec", "parse_formula"]


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
        return f"({lhs} | {self.group})"


@dataclass(frozen=True)
class ParsedFormula:
    text: str
    response: str
    fixed: str  # right-hand side of the fixed part, formulae syntax
    random: tuple[RandomTermSpec, ...]


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` characters outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("formula: unbalanced parentheses")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError("formula: unbalanced parentheses")
    out.append("".join(cur))
    return out


def _signed_terms(rhs: str) -> list[tuple[str, str]]:
    """Top-level additive terms of ``rhs`` as (sign, text) pairs."""
    terms, depth, cur, sign = [], 0, [], "+"
    for ch in rhs:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch in "+-" and depth == 0:
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


_IDENT = re.compile(r"^[A-Za-z_.][\w.]*$")


def _parse_bar(inner: str) -> list[RandomTermSpec]:
    double = "||" in inner
    parts = inner.split("||") if double else _split_top(inner, "|")
    if len(parts) != 2:
        raise ValueError(f"formula: random term '({inner})' must have exactly one '|'")
    lhs, grp = parts[0].strip(), parts[1].strip()
    intercept, cols = True, []
    for sign, term in _signed_terms(lhs):
        if term in ("0", "-1") or (sign == "-" and term == "1"):
            intercept = False
        elif term == "1":
            intercept = True
        elif sign == "-":
            raise ValueError(f"formula: cannot remove '{term}' in random term '({inner})'")
        else:
            cols.append(term)
    if not grp:
        raise ValueError(f"formula: random term '({inner})' has no grouping variable")
    nested = [g.strip() for g in grp.split("/")]
    groups: list[tuple[str, ...]] = []
    for k in range(len(nested)):
        vars_ = tuple(v.strip() for part in nested[: k + 1] for v in part.split(":"))
        for v in vars_:
            if not _IDENT.match(v):
                raise ValueError(f"formula: grouping variable '{v}' in '({inner})' is not a column name")
        groups.append(vars_)
    specs = []
    for g in groups:
        if double:
            if intercept:
                specs.append(RandomTermSpec("", True, g))
            specs.extend(RandomTermSpec(c, False, g) for c in cols)
        else:
            if not intercept and not cols:
                raise ValueError(f"formula: random term '({inner})' has no columns")
            specs.append(RandomTermSpec(" + ".join(cols), intercept, g))
    return specs


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, fixed right-hand side and random-effects blocks."""
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError("formula: expected a string 'response ~ terms', e.g. 'y ~ 1 + x + (1|g)'")
    _split_top(formula, "~")  # raises on unbalanced parentheses
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    if not response:
        raise ValueError("formula: the response (left of '~') is missing")
    fixed_terms: list[str] = []
    random: list[RandomTermSpec] = []
    intercept = True
    for sign, term in _signed_terms(rhs):
        if term.startswith("(") and term.endswith(")") and "|" in term:
            if sign == "-":
                raise ValueError(f"formula: a random term cannot be subtracted: '{term}'")
            random.extend(_parse_bar(term[1:-1]))
        elif term == "0" or (sign == "-" and term == "1"):
            intercept = False
        elif term == "1":
            intercept = True
        else:
            fixed_terms.append(("- " if sign == "-" else "+ ") + term)
    fixed = ("1 " if intercept else "0 ") + " ".join(fixed_terms)
    return ParsedFormula(formula.strip(), response, fixed.strip(), tuple(random))
