"""coef_test (MATLAB coefTest, with K) and anova, against Wald statistics computed directly here.

The direct computations use numpy's inverse of the fit's Cov(beta-hat) (or of a dense MATLAB
sigma^2 V for K contrasts) and scipy.stats' F / chi-square tails, independently of the modules
tested. Tolerance 1e-9 relative (the same formula by another route).
"""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sl
from scipy import stats

import ppl_glmm
from ppl_glmm.datasets import load_mfr
from ppl_glmm.errors import InputError, InputTypeError

REL = 1e-9


def wald(beta, cov, H, c, df2):
    d = H @ beta - c
    r = np.linalg.matrix_rank(H)
    F = d @ np.linalg.pinv(H @ cov @ H.T) @ d / r
    p = stats.chi2.sf(r * F, r) if np.isinf(df2) else stats.f.sf(F, r, df2)
    return p, F


def test_anova_one_column_terms_equal_t_squared(mfr_model):
    a = mfr_model.anova()
    fe = mfr_model.fixed_effects()
    assert list(a.columns) == ["Term", "FStat", "DF1", "DF2", "pValue"]
    assert list(a.Term) == ["(Intercept)", "newprocess", "time_dev", "temp_dev", "supplier"]
    for term in ["(Intercept)", "newprocess", "time_dev", "temp_dev"]:
        row = a[a.Term == term].iloc[0]
        coef = fe[fe.Name == term].iloc[0]
        assert row.DF1 == 1 and row.DF2 == mfr_model.dfe
        np.testing.assert_allclose(row.FStat, coef.tStat**2, rtol=REL)
        np.testing.assert_allclose(row.pValue, coef.pValue, rtol=1e-8)


def test_anova_multi_column_term_is_a_direct_wald_f(mfr_model):
    a = mfr_model.anova()
    row = a[a.Term == "supplier"].iloc[0]
    names = mfr_model.coefficient_names
    H = np.eye(len(names))[[names.index("supplier_C"), names.index("supplier_B")]]
    beta, cov = mfr_model._result.beta, mfr_model.coefficient_covariance
    p, F = wald(beta, cov, H, 0, mfr_model.dfe)
    assert row.DF1 == 2
    np.testing.assert_allclose([row.FStat, row.pValue], [F, p], rtol=REL)
    none = mfr_model.anova(dfmethod="none")
    row = none[none.Term == "supplier"].iloc[0]
    assert np.isinf(row.DF2)
    np.testing.assert_allclose(row.pValue, wald(beta, cov, H, 0, np.inf)[0], rtol=REL)


def test_anova_names_interaction_and_factor_terms():
    m = ppl_glmm.fitglme(
        load_mfr(),
        "defects ~ 1 + newprocess*time_dev + temp_dev + supplier + (1|factory)",
        distribution="poisson",
    )
    a = m.anova()
    assert list(a.Term) == [
        "(Intercept)",
        "newprocess",
        "time_dev",
        "newprocess:time_dev",
        "temp_dev",
        "supplier",
    ]
    assert list(a.DF1) == [1, 1, 1, 1, 1, 2]
    row = a[a.Term == "newprocess:time_dev"].iloc[0]
    fe = m.fixed_effects()
    np.testing.assert_allclose(row.FStat, fe[fe.Name == "newprocess:time_dev"].tStat.iloc[0] ** 2, rtol=REL)


def test_coef_test_default_tests_all_but_the_intercept(mfr_model):
    res = mfr_model.coef_test()
    pval, F, df1, df2 = res  # unpacks as MATLAB's four outputs
    beta, cov = mfr_model._result.beta, mfr_model.coefficient_covariance
    H = np.eye(6)[1:]
    p, F0 = wald(beta, cov, H, 0, mfr_model.dfe)
    assert df1 == 5 and df2 == mfr_model.dfe
    np.testing.assert_allclose([F, pval], [F0, p], rtol=REL)
    assert res.pValue == pval and res.F == F


def test_coef_test_custom_h_and_c(mfr_model):
    beta, cov = mfr_model._result.beta, mfr_model.coefficient_covariance
    H = np.array([[0, 1, -1, 0, 0, 0], [0, 0, 0, 1, 0, 0.5]], dtype=float)
    c = np.array([0.1, -1.0])
    p, F = wald(beta, cov, H, c, np.inf)
    res = mfr_model.coef_test(H, c, dfmethod="none")
    np.testing.assert_allclose([res.F, res.pValue], [F, p], rtol=REL)
    assert res.DF1 == 2 and np.isinf(res.DF2)
    one = mfr_model.coef_test([0, 0, 0, 1, 0, 0], 0.5)  # a vector is one row; c a scalar
    fe = mfr_model.fixed_effects()
    t = (beta[3] - 0.5) / fe.SE[3]
    np.testing.assert_allclose(one.F, t**2, rtol=REL)


def test_rank_deficient_h_is_reduced_and_inconsistent_refused(mfr_model):
    H = np.array([[0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 2, -3, 0, 0, 0]], dtype=float)
    c = np.array([0.1, 0.2, 0.2 - 0.6])
    full = mfr_model.coef_test(H, c)
    reduced = mfr_model.coef_test(H[:2], c[:2])
    assert full.DF1 == 2
    np.testing.assert_allclose([full.F, full.pValue], [reduced.F, reduced.pValue], rtol=1e-9)
    with pytest.raises(InputError, match="inconsistent"):
        mfr_model.coef_test(H, np.array([0.1, 0.2, 0.0]))
    with pytest.raises(InputError, match="rank 0"):
        mfr_model.coef_test(np.zeros((1, 6)))


def _dense_joint(m):
    """MATLAB's sigma^2 V for a Poisson/log or binomial/logit fit (C = W, canonical links)."""
    d = m._ws.design
    X, Z = d.X, d.Z().toarray()
    mu = m.fitted()[d.subset]
    C = d.weights * (d.binomial_size * mu * (1 - mu) if m.distribution == "binomial" else mu)
    psis = m._ws.layout.covariances(m._result.theta, m._result.sigma)
    D = sl.block_diag(*[np.kron(np.eye(t.n_levels), P) for t, P in zip(d.terms, psis)])
    Vinv = np.block([[X.T * C @ X, X.T * C @ Z], [Z.T * C @ X, Z.T * C @ Z + np.linalg.inv(D)]])
    return np.linalg.inv(Vinv)


def test_coef_test_with_re_contrast_uses_the_joint_covariance(mfr_model):
    m = mfr_model
    q = m.num_random_effects
    rng = np.random.default_rng(3)
    H = np.zeros((2, 6))
    H[0, 0] = 1.0
    K = np.zeros((2, q))
    K[0, 0] = 1.0  # intercept + factory 1
    K[1, 1], K[1, 2] = 1.0, -1.0  # factory 2 - factory 3
    c = rng.normal(size=2) * 0.1
    V = _dense_joint(m)
    L = np.hstack([H, K])
    x = np.concatenate([m._result.beta, m._result.b])
    d = L @ x - c
    F = d @ np.linalg.solve(L @ V @ L.T, d) / 2
    res = m.coef_test(H, c, K=K)
    assert res.DF1 == 2
    np.testing.assert_allclose([res.F, res.pValue], [F, stats.f.sf(F, 2, m.dfe)], rtol=1e-8)
    # H's rows may be zero when K tests random effects alone; [H, K] is reduced together
    K3 = np.vstack([K, K[0] + K[1]])
    H3 = np.vstack([H, H[0] + H[1]])
    res3 = m.coef_test(H3, np.append(c, c.sum()), K=K3)
    np.testing.assert_allclose(res3.F, res.F, rtol=1e-9)
    with pytest.raises(InputError, match="inconsistent"):
        m.coef_test(H3, np.append(c, c.sum() + 1), K=K3)


def test_bad_arguments(mfr_model):
    m = mfr_model
    with pytest.raises(InputError, match="H: expected an M x 6"):
        m.coef_test(np.eye(5))
    with pytest.raises(InputTypeError, match="H: expected a numeric"):
        m.coef_test("all")
    with pytest.raises(InputTypeError, match="H: holds text; give numbers"):
        m.coef_test([["a", "b", "c", "d", "e", "f"]])
    with pytest.raises(InputError, match="H: contains NaN"):
        m.coef_test([[np.nan, 0, 0, 0, 0, 1]])
    with pytest.raises(InputError, match="c: expected 5 values"):
        m.coef_test(None, [0, 0])
    with pytest.raises(InputError, match="K: expected an 5 x 20"):
        m.coef_test(None, None, K=np.zeros((5, 3)))
    with pytest.raises(InputError, match="dfmethod"):
        m.coef_test(dfmethod="satterthwaite")
    with pytest.raises(InputError, match="dfmethod"):
        m.anova(dfmethod="kr")


def test_intercept_only_model_needs_h():
    d = load_mfr()
    m = ppl_glmm.fitglme(d, "defects ~ 1 + (1|factory)", distribution="poisson")
    with pytest.raises(InputError, match="only an intercept"):
        m.coef_test()
    a = m.anova()
    assert list(a.Term) == ["(Intercept)"]
    res = m.coef_test([[1.0]])
    np.testing.assert_allclose(res.F, a.FStat[0], rtol=REL)


def test_inputs_are_not_mutated(mfr_model):
    H = pd.DataFrame(np.eye(6)[1:])
    before = H.copy()
    mfr_model.coef_test(H)
    pd.testing.assert_frame_equal(H, before)
