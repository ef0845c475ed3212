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
