"""random_effects (MATLAB randomEffects with SEPred), cond_var (lme4 condVar) and coef_ci.

References: lme4's ``ranef(fit, condVar = TRUE)`` in tests/reference/joint_reference.json (made by
tests/reference/make_reference_joint.R), and a dense computation of MATLAB's joint covariance
sigma^2 V, V^-1 = [[X'CX, X'CZ], [Z'CX, Z'CZ + D^-1]], written here from the data, the estimates
and the family's information weights (C -> W for pseudo-likelihood), independently of the engine.

Tolerances against lme4 (fits agree to <= 7e-9 in logLik): conditional modes 1e-5 of the largest
|mode| (measured <= 2.4e-7, mfr); condVar 1e-6 relative (measured <= 1.1e-7, Penicillin): both
move with the estimates, which agree to ~1e-7. Against the dense computation 1e-9 relative (the
same numbers by another route; measured ~1e-15).
"""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sl
from reference_cases import REF

import ppl_glmm
from ppl_glmm.errors import InputError, InputTypeError
from ppl_glmm.inference.distributions import t_ppf

R = json.loads((REF / "joint_reference.json").read_text())
LME4_CASES = ["cbpp_binomial", "mfr_poisson_effects", "sleepstudy_lmm", "penicillin_crossed"]
MODE_REL = 1e-5
CONDVAR_REL = 1e-6
DENSE_REL = 1e-9


@pytest.fixture(scope="module")
def penicillin():
    d = pd.read_csv(REF / "data" / "penicillin.csv")
    return ppl_glmm.fitglme(d, "diameter ~ 1 + (1|plate) + (1|sample)")


@pytest.fixture(scope="module")
def model(fitted, penicillin):
    return lambda name: penicillin if name == "penicillin_crossed" else fitted(name)


def dense_joint(m, C=None):
    """MATLAB's sigma^2 V (dense) and the pieces used: (V, X, Z, C, sigma^2, D)."""
    d = m._ws.design
    X, Z = d.X, d.Z().toarray()
    mu = m.fitted()[d.subset]
    if C is None:
        if m.distribution == "normal":
            C = d.weights.astype(float)
        elif m.distribution == "binomial" and m.link == "logit":
            C = d.weights * d.binomial_size * mu * (1 - mu)
        elif m.distribution == "poisson" and m.link == "log":
            C = d.weights * mu
        else:
            raise AssertionError("give C")
    s2 = m.dispersion
    psis = m._ws.layout.covariances(m._result.theta, m._result.sigma)
    D = sl.block_diag(*[np.kron(np.eye(t.n_levels), P) for t, P in zip(d.terms, psis)]) / s2
    Vinv = np.block([[X.T * C @ X, X.T * C @ Z], [Z.T * C @ X, Z.T * C @ Z + np.linalg.inv(D)]])
    return s2 * np.linalg.inv(Vinv), X, Z, C, s2, D


@pytest.mark.parametrize("name", LME4_CASES)
def test_estimates_and_condvar_match_lme4(model, name):
    m = model(name)
    ref = R[name]
    assert abs(m.log_likelihood - ref["logLik"]) < 1e-6  # the same fit
    re = m.random_effects()
    cv = m.cond_var()
    assert len(cv) == len(m._ws.design.terms)
    for term, c in zip(m._ws.design.terms, cv):
        rr = ref["ranef"][term.group]
        assert list(term.levels) == rr["levels"] and list(term.names) == rr["names"]
        est = re[re.Group == term.group].Estimate.to_numpy().reshape(term.n_levels, term.q_r)
        expected = np.array(rr["values"]).T
        assert np.max(np.abs(est - expected)) <= MODE_REL * np.max(np.abs(expected))
        pv = np.array(rr["postVar"])  # (levels, q_r, q_r)
        assert c.shape == pv.shape
        np.testing.assert_allclose(c, pv, rtol=0, atol=CONDVAR_REL * np.max(np.abs(pv)))


def test_sleepstudy_condvar_blocks_are_correlated_2x2(model):
    cv = model("sleepstudy_lmm").cond_var()[0]
    assert cv.shape == (18, 2, 2)
    np.testing.assert_allclose(cv, np.transpose(cv, (0, 2, 1)))
    assert np.all(np.abs(cv[:, 0, 1]) > 1)  # a real covariance, not a diagonal


@pytest.mark.parametrize(
    "name", ["cbpp_binomial", "mfr_poisson_effects", "sleepstudy_lmm", "penicillin_crossed"]
)
def test_sepred_is_the_b_block_of_the_dense_joint_covariance(model, name):
    m = model(name)
    V, X, Z, C, s2, D = dense_joint(m)
    p = X.shape[1]
    re = m.random_effects()
    np.testing.assert_allclose(re.SEPred**2, np.diag(V[p:, p:]), rtol=DENSE_REL)
    # SEPred^2 - condVar = the beta-uncertainty term, computed densely on its own:
    # Cov(b-hat - b) = Cov(b | beta) + F Cov(beta) F' with F = (Z'CZ + D^-1)^-1 Z'CX
    P = Z.T * C @ Z + np.linalg.inv(D)
    F = np.linalg.solve(P, Z.T * C @ X)
    beta_term = np.einsum("ip,pq,iq->i", F, s2 * np.linalg.inv(X.T * C @ X - X.T * C @ Z @ F), F)
    condvar = np.concatenate([np.diagonal(c, axis1=1, axis2=2).ravel() for c in m.cond_var()])
    np.testing.assert_allclose(re.SEPred**2 - condvar, beta_term, rtol=1e-7, atol=1e-14)
    assert np.all(beta_term > 0)


def test_table_columns_and_statistics(model):
    m = model("mfr_poisson_effects")
    re = m.random_effects(alpha=0.1)
    assert list(re.columns) == [
        "Group",
        "Level",
        "Name",
        "Estimate",
        "SEPred",
        "tStat",
        "DF",
        "pValue",
        "Lower",
        "Upper",
    ]
    np.testing.assert_array_equal(re.Estimate, m._result.b)
    np.testing.assert_allclose(re.tStat, re.Estimate / re.SEPred)
    assert np.all(re.DF == m.dfe)
    crit = t_ppf(0.95, m.dfe)
    np.testing.assert_allclose(re.Upper - re.Estimate, crit * re.SEPred)
    np.testing.assert_allclose(re.Estimate - re.Lower, crit * re.SEPred)
    none = m.random_effects(dfmethod="none")
    assert np.all(np.isinf(none.DF))
    np.testing.assert_allclose(none.Upper - none.Estimate, 1.959963984540054 * none.SEPred)


def test_coef_ci(model):
    m = model("sleepstudy_lmm")
    fe, re = m.coef_ci(alpha=0.1, dfmethod="none")
    assert fe.shape == (2, 2) and re.shape == (36, 2)
    np.testing.assert_array_equal(fe, m.fixed_effects("none", 0.1)[["Lower", "Upper"]].to_numpy())
    np.testing.assert_array_equal(re, m.random_effects("none", 0.1)[["Lower", "Upper"]].to_numpy())
    # the caller's own arrays, as MATLAB's (pandas' copy-on-write gave read-only views): writing
    # into them works and leaves the model's intervals as they were
    fe[:] = 0.0
    re[:] = 0.0
    again = m.coef_ci(alpha=0.1, dfmethod="none")
    np.testing.assert_array_equal(again[0], m.fixed_effects("none", 0.1)[["Lower", "Upper"]].to_numpy())
    assert np.all(again[1][:, 1] > again[1][:, 0])


def test_bad_arguments(model):
    m = model("cbpp_binomial")
    with pytest.raises(InputError, match="dfmethod"):
        m.random_effects(dfmethod="satterthwaite")
    with pytest.raises(InputError, match="alpha"):
        m.random_effects(alpha=1.5)
    with pytest.raises(InputTypeError, match="alpha"):
        m.coef_ci(alpha="0.05")
    with pytest.raises(InputError, match="dfmethod"):
        m.coef_ci(dfmethod="kenward")


def _observed_information_probit(m):
    """-d^2/deta^2 of the binomial-probit log-likelihood at the fitted eta, by central differences
    of scipy's log-pmf (h = 1e-4: relative error ~1e-8)."""
    from scipy.stats import binom, norm

    d = m._ws.design
    eta = m._result.eta
    n = d.binomial_size
    k = np.rint(m._result.y * n)

    def ll(e):
        return binom.logpmf(k, n, norm.cdf(e))

    h = 1e-4
    return -(ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / h**2


def test_laplace_non_canonical_uses_the_observed_information(fitted):
    m = fitted("cbpp_probit")
    V, X, *_ = dense_joint(m, C=_observed_information_probit(m))
    p = X.shape[1]
    # 1e-6: the finite-difference information is accurate to ~1e-8 relative
    np.testing.assert_allclose(m.random_effects().SEPred ** 2, np.diag(V[p:, p:]), rtol=1e-6)


@pytest.mark.parametrize("method", ["MPL", "REMPL"])
def test_pseudo_likelihood_uses_the_working_weights(method):
    """C -> W: the final pseudo-data LME's weights (probit, where W differs from C)."""
    d = pd.read_csv(REF / "data" / "cbpp.csv")
    d["period"] = d["period"].astype(str)
    m = ppl_glmm.fitglme(
        d,
        "incidence ~ period + (1|herd)",
        distribution="binomial",
        binomial_size="size",
        link="probit",
        fit_method=method,
    )
    W = m._result.working[1]
    V, X, *_ = dense_joint(m, C=W)
    p = X.shape[1]
    np.testing.assert_allclose(m.random_effects().SEPred ** 2, np.diag(V[p:, p:]), rtol=DENSE_REL)
    np.testing.assert_allclose(V[:p, :p], m.coefficient_covariance, rtol=1e-8)


def test_methods_leave_the_model_unchanged(model):
    m = model("sleepstudy_lmm")
    b, cov = m._result.b.copy(), m.coefficient_covariance
    m.random_effects()
    m.cond_var()[0][:] = 0.0  # a copy: the model keeps its own
    assert np.all(m.cond_var()[0][:, 0, 0] > 0)
    np.testing.assert_array_equal(m._result.b, b)
    np.testing.assert_array_equal(m.coefficient_covariance, cov)


def test_pickled_model_rebuilds_the_joint_covariance(model):
    import copy
    import pickle

    m = model("cbpp_binomial")
    re = m.random_effects()  # computes and caches the joint covariance
    data = pickle.dumps(m)
    assert len(data) < 200_000  # no engine problem or compiled function in the pickle
    for m2 in (pickle.loads(data), copy.deepcopy(m)):
        pd.testing.assert_frame_equal(m2.random_effects(), re)


@pytest.mark.parametrize("method", ["approximatelaplace", "reml", "quadrature"])
def test_other_fit_methods_use_the_same_joint_covariance(method):
    """beta in the inner step (ApproximateLaplace, REML) and adaptive quadrature: the joint
    covariance at the fit's mode, checked against the dense sigma^2 V."""
    if method == "reml":
        d = pd.read_csv(REF / "data" / "sleepstudy.csv")
        m = ppl_glmm.fitglme(d, "Reaction ~ Days + (Days|Subject)", fit_method="REML")
    else:
        d = pd.read_csv(REF / "data" / "cbpp.csv")
        d["period"] = d["period"].astype(str)
        extra = {"n_agq": 5} if method == "quadrature" else {}
        m = ppl_glmm.fitglme(
            d,
            "incidence ~ period + (1|herd)",
            distribution="binomial",
            binomial_size="size",
            fit_method=method,
            **extra,
        )
    V, X, *_ = dense_joint(m)
    p = X.shape[1]
    np.testing.assert_allclose(m.random_effects().SEPred ** 2, np.diag(V[p:, p:]), rtol=DENSE_REL)
