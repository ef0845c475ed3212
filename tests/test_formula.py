import pytest

import ppl_glmm
from ppl_glmm.formula import RandomTermSpec, parse_formula


def test_fixed_and_random_parts():
    pf = parse_formula("defects ~ 1 + newprocess + time_dev + supplier + (1|factory)")
    assert pf.response == "defects"
    assert pf.fixed.split() == ["1", "+", "newprocess", "+", "time_dev", "+", "supplier"]
    assert pf.random == (RandomTermSpec("", True, ("factory",)),)


def test_correlated_slope_and_no_intercept_forms():
    pf = parse_formula("y ~ x + (x|g) + (1 + x|h) + (0 + x|k) + (-1 + x|m)")
    assert [(t.expr, t.intercept, t.group) for t in pf.random] == [
        ("x", True, "g"),
        ("x", True, "h"),
        ("x", False, "k"),
        ("x", False, "m"),
    ]


def test_nested_and_crossed_grouping():
    pf = parse_formula("y ~ (1|a/b/c) + (1|d:e)")
    assert [t.group for t in pf.random] == ["a", "a:b", "a:b:c", "d:e"]


def test_double_bar_gives_uncorrelated_blocks():
    pf = parse_formula("y ~ x + (1 + x || g)")
    assert [str(t) for t in pf.random] == ["(1 | g)", "(0 + x | g)"]


def test_intercept_removal_in_fixed_part():
    assert parse_formula("y ~ x - 1 + (1|g)").fixed == "0 + x"
    assert parse_formula("y ~ 0 + x + (1|g)").fixed == "0 + x"
    assert parse_formula("y ~ (1|g)").fixed == "1"
    assert parse_formula("y ~ a*b + (1|g)").fixed == "1 + a*b"


@pytest.mark.parametrize(
    "formula,match",
    [
        ("y + (1|g)", "expected a string 'response ~ terms'"),
        ("~ x + (1|g)", "response"),
        ("y ~ x + (1|g", "unbalanced"),
        ("y ~ x + (1|)", "no grouping variable"),
        ("y ~ x + (1|g|h)", "exactly one"),
        ("y ~ x - (1|g)", "cannot be subtracted"),
        ("y ~ x + (1|log(g))", "not a column name"),
        ("y ~ x + (0|g)", "no columns"),
    ],
)
def test_formula_errors_name_the_argument(formula, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_formula(formula)
    assert str(err.value).startswith("formula")


def test_grouping_variables_named_in_any_script():
    """(1|工厂) and (1|Über) were refused as 'not a column name' (an ASCII first letter was
    required), while the same names worked as fixed effects."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    d = pd.DataFrame(
        {"y": rng.poisson(3, 60), "工厂": np.repeat(list("abcdef"), 10), "Über": np.tile(list("uvw"), 20)}
    )
    with pytest.warns(ppl_glmm.SingularFitWarning):
        m = ppl_glmm.fitglme(d, "y ~ 1 + (1|工厂) + (1|Über)", distribution="poisson")
    assert m.formula == "y ~ 1 + (1 | 工厂) + (1 | Über)"
    assert [t.group for t in m._ws.design.terms] == ["工厂", "Über"]
