"""The observation function's backend: C for small fits (fast to start), Numba for large ones.

Both backends compile the same graph, so a fit's numbers do not depend on which one ran it beyond
rounding; the C backend's start-up answers (compiler probe, extension suffix) are PyTensor's own.
"""

import json

import numpy as np
import pandas as pd
import pytensor
import pytest

import ppl_glmm
from ppl_glmm import backend, pymc_model
from ppl_glmm.datasets import load_mfr

MFR = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"
needs_cxx = pytest.mark.skipif(not pytensor.config.cxx, reason="PyTensor has no C++ compiler")


def _mfr(**kw):
    return ppl_glmm.fitglme(load_mfr(), MFR, distribution="Poisson", dummy_var_coding="effects", **kw)


@needs_cxx
def test_small_fits_use_the_c_backend_and_large_fits_numba():
    assert backend.engine_mode(100) == backend.C_MODE
    assert backend.engine_mode(backend.C_MAX_POINTS) == backend.C_MODE
    assert backend.engine_mode(backend.C_MAX_POINTS + 1) is None
    assert _mfr()._problem().obs.key.endswith("-CVM")  # 100 rows
    rng = np.random.default_rng(1)
    n = backend.C_MAX_POINTS + 200
    g = rng.integers(0, 30, n)
    data = pd.DataFrame({"y": rng.poisson(np.exp(0.3 + rng.normal(0, 0.5, 30)[g])), "g": g})
    large = ppl_glmm.fitglme(data, "y ~ 1 + (1|g)", distribution="Poisson")
    assert not large._problem().obs.key.endswith("-CVM")


def test_a_configured_pytensor_backend_is_used_for_every_fit():
    with pytensor.config.change_flags(linker="cvm"):
        assert backend.engine_mode(100) is None  # the user's configuration, whatever the size
    with pytensor.config.change_flags(cxx=""):
        assert backend.engine_mode(100) is None  # no compiler: Numba


@needs_cxx
def test_both_backends_compute_the_same_fit(monkeypatch):
    """The C and Numba functions of one graph agree to rounding, and so do the fits made with them
    (the Numba fit: the threshold lowered so that 100 rows use Numba)."""
    c_fit = _mfr()
    monkeypatch.setattr(backend, "C_MAX_POINTS", 0)
    numba_fit = _mfr()
    assert not numba_fit._problem().obs.key.endswith("-CVM")
    graph = c_fit._ws.graph
    rng = np.random.default_rng(0)
    args = (
        rng.normal(size=50),
        rng.poisson(2.0, 50).astype(float),
        np.ones(50),
        np.ones(50, "int64"),
        np.zeros(50),
    )
    fc = pymc_model.observation_function(graph, backend.C_MODE)
    fn = pymc_model.observation_function(graph, None)
    for a, b in zip(fc(*args), fn(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    assert abs(c_fit.log_likelihood - numba_fit.log_likelihood) < 1e-9
    np.testing.assert_allclose(c_fit.coefficients["Estimate"], numba_fit.coefficients["Estimate"], rtol=1e-6)


def test_the_compiler_probe_is_restored_from_and_kept_for_later_processes(tmp_path, monkeypatch):
    from pytensor.link.c.cmodule import GCC_compiler

    path = tmp_path / "march.json"
    monkeypatch.setattr(backend, "_probe_path", lambda: path)
    monkeypatch.setattr(GCC_compiler, "march_flags", None)
    with backend.c_backend_start():  # no answer kept yet: PyTensor probes (simulated here)
        GCC_compiler.march_flags = ["-march=probed", "-mtune=probed"]
    assert json.loads(path.read_text()) == ["-march=probed", "-mtune=probed"]
    monkeypatch.setattr(GCC_compiler, "march_flags", None)  # a new process
    with backend.c_backend_start():
        assert GCC_compiler.march_flags == ["-march=probed", "-mtune=probed"]
    path.write_text('{"not": "a list"}')  # a damaged file is ignored and rewritten
    monkeypatch.setattr(GCC_compiler, "march_flags", None)
    with backend.c_backend_start():
        assert GCC_compiler.march_flags is None
        GCC_compiler.march_flags = []
    assert json.loads(path.read_text()) == []


def test_the_probe_is_keyed_by_the_machine_and_compiler(monkeypatch):
    first = backend._probe_path()
    if first is None:
        pytest.skip("no /proc/cpuinfo: the probe is not kept")
    assert first.parent.name == "ppl_glmm" and first.name.startswith("march-")
    with pytensor.config.change_flags(gcc__cxxflags="-O2"):
        assert backend._probe_path() != first


def test_the_extension_suffix_is_setuptools_answer_and_restored():
    from pytensor.link.c import cmodule

    original = cmodule._get_ext_suffix
    with backend.c_backend_start():
        assert cmodule._get_ext_suffix is not original
        assert cmodule._get_ext_suffix() == original()
    assert cmodule._get_ext_suffix is original
