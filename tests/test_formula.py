import pytest

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
