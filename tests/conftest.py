import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reference_cases import CASES, fit_case


@pytest.fixture(scope="session")
def fitted():
    """Session cache of the reference fits: fitted(name) -> model."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = fit_case(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def mfr_model():
    import ppl_glmm
    from ppl_glmm.datasets import load_mfr

    return ppl_glmm.fitglme(
        load_mfr(),
        "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
        distribution="Poisson",
        link="log",
        fit_method="Laplace",
        dummy_var_coding="effects",
    )


__all__ = ["CASES"]


@pytest.fixture(scope="session")
def mfr_bayes(mfr_model):
    """NUTS on the mfr model with every default (4 chains x 1000 draws, ML warm start), seeded."""
    return mfr_model.fit_bayes(rng=1, progress=False)


@pytest.fixture(scope="session")
def sleep_bayes(fitted):
    """A correlated (Days|Subject) normal model: sd, corr and sigma in the posterior (short run)."""
    return fitted("sleepstudy_lmm").fit_bayes(draws=300, chains=2, rng=2, progress=False)


@pytest.fixture
def forbid_compilation(monkeypatch):
    """Make any PyTensor compilation fail from here on; returns a check that the compile counters
    have not moved since the fixture was called (use after the lazy sampler has been built)."""
    import pytensor

    from ppl_glmm import pymc_model

    before = dict(pymc_model.COMPILE_COUNT)

    def boom(*args, **kwargs):
        raise AssertionError("pytensor.function called during refit")

    monkeypatch.setattr(pytensor, "function", boom)
    monkeypatch.setattr(pytensor.compile.function, "function", boom, raising=False)

    def unchanged() -> bool:
        return pymc_model.COMPILE_COUNT == before

    return unchanged
