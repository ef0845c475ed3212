"""noncentered='auto': each random-effects term is centred where the ML fit shows the data dominate
its prior (rho_r, the share of prior variance left in the random effects' least informed direction,
below 1/2), else
non-centred. rho_r is checked against lme4's own condVar and variance parameters; the choice on
reference models against the parametrisation measured to sample better (docs/bayes.md)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bayes_family_cases import family_fit
from reference_cases import fit_case

import ppl_glmm
from ppl_glmm.bayes.fit import CENTER_BELOW, choose_centering, retained_prior_variance

REF = Path(__file__).parent / "reference"
JOINT = json.loads((REF / "joint_reference.json").read_text())
LME4 = json.loads((REF / "lme4_reference.json").read_text())


@pytest.fixture(scope="module")
def model():
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = fit_case(name)
        return cache[name]

    return get


def _lme4_rho(name: str) -> float:
    """rho from lme4 alone: condVar (ranef(condVar = TRUE)) and Psi = sigma^2 Lambda Lambda' from
    lme4's theta (column-major lower triangle) and sigma, one term."""
    ref = JOINT[name]
    (term,) = ref["ranef"].values()
    post_var = np.array(term["postVar"])  # (levels, q, q)
    q = post_var.shape[1]
    L = np.zeros((q, q))
    L[np.tril_indices(q)[1], np.tril_indices(q)[0]] = LME4[name]["lme4"]["theta"]
    L = L.T  # theta fills Lambda column by column
    Psi = ref["sigma"] ** 2 * L @ L.T
    w, V = np.linalg.eigh(Psi)
    root_inv = V @ np.diag(w**-0.5) @ V.T  # the symmetric Psi^-1/2
    return float(np.mean([np.linalg.eigvalsh(root_inv @ c @ root_inv).max() for c in post_var]))


@pytest.mark.parametrize("name", ["mfr_poisson_effects", "sleepstudy_lmm", "cbpp_binomial"])
def test_retained_prior_variance_agrees_with_lme4(model, name):
    """Ours against lme4's condVar and theta (tight settings), to 1e-6 relative: condVar agrees to
    about 1e-7 (test_random_effects) and theta to about 1e-7 as well."""
    (rho,) = retained_prior_variance(model(name))
    assert rho == pytest.approx(_lme4_rho(name), rel=1e-6)
    assert 0 < rho < 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # rho: measured 0.28, 0.33, 0.39, 0.14 -- the centred form gave 1.8-6x the min bulk ESS
        ("mfr_poisson_effects", (True,)),
        ("cbpp_binomial", (True,)),
        ("sleepstudy_lmm", (True,)),
        ("poisson_offset_interaction", (True,)),
        # rho 0.74; 0.68, 0.53, 0.68 -- the non-centred form gave 3-7x the min bulk ESS
        ("binary_slope", (False,)),
        ("grouseticks_nested_crossed", (False, False, False)),
    ],
)
def test_auto_centres_the_terms_whose_data_dominate(model, name, expected):
    m = model(name)
    rhos = retained_prior_variance(m)
    assert choose_centering("auto", m, len(expected)) == expected
    assert tuple(r < CENTER_BELOW for r in rhos) == expected
    assert choose_centering(True, m, len(expected)) == (False,) * len(expected)
    assert choose_centering(False, m, len(expected)) == (True,) * len(expected)
    assert choose_centering("auto", None, len(expected)) == (False,) * len(expected)  # init='auto'


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("negative_binomial_log", (True,)),  # rho 0.35: centred ESS 1551 against 711
        ("gamma_log_slope", (False,)),  # rho 0.75: centred ESS 183 and 19 divergences, against 533
    ],
)
def test_auto_choice_on_the_gamma_and_negative_binomial_cases(name, expected):
    assert choose_centering("auto", family_fit(name), 1) == expected


def test_a_singular_term_is_never_centred():
    """An SD estimated as zero: Psi is not invertible, rho = inf, the term stays non-centred."""
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"g": np.repeat([f"g{i}" for i in range(8)], 6), "y": rng.poisson(3.0, 48)})
    d.loc[d.g == "g0", "y"] = 3  # keep the group means tight: the ML SD goes to zero
    m = ppl_glmm.fitglme(d, "y ~ 1 + (1|g)", distribution="poisson")
    assert m._result.singular
    assert retained_prior_variance(m) == [np.inf]
    assert choose_centering("auto", m, 1) == (False,)
