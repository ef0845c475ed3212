"""Start-up: ``import ppl_glmm`` loads no heavy dependency, and an ML fit loads only what it uses.

Run in new processes (this one has imported everything already). The times are
``benchmarks/startup.py``'s; these tests only keep the import path from growing back. An ML fit
whose compiled likelihood is stored on disk neither builds the PyMC model nor imports PyMC
(importing it is ~0.5 s of a fresh process): the stored function carries no PyMC class. A small
fit runs on the C backend and imports no Numba (~1.4 s of a fresh process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import ppl_glmm
after_import = sorted(m for m in {heavy} if m in sys.modules)
from ppl_glmm.datasets import load_mfr
glme = ppl_glmm.fitglme(load_mfr(), "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
                        distribution="Poisson", link="log", dummy_var_coding="effects")
str(glme), glme.coefficients, glme.covariance_parameters()
print(json.dumps({{"after_import": after_import,
                   "after_fit": sorted(m for m in {unused} if m in sys.modules)}}))
"""

HEAVY = ["numpy", "pandas", "scipy", "formulae", "pytensor", "pymc", "numba", "arviz", "xarray"]
UNUSED_BY_A_FIT = [
    "scipy.stats",
    "arviz",
    "arviz_base",
    "matplotlib",
    "ppl_glmm.bayes",
    "pymc",
    "xarray",
]


def _unused_by_a_fit() -> list[str]:
    """With a C++ compiler a 100-row fit runs on PyTensor's C backend: Numba is not imported."""
    import pytensor

    return UNUSED_BY_A_FIT + (["numba"] if pytensor.config.cxx else [])


def _run(code: str, **env_extra) -> dict:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _probe() -> dict:
    return _run(PROBE.format(heavy=HEAVY, unused=_unused_by_a_fit()))


def test_import_loads_nothing_heavy_and_a_fit_skips_what_it_does_not_use():
    _probe()  # the first fit on a machine compiles and stores the likelihood (and imports PyMC)
    loaded = _probe()
    assert loaded["after_import"] == [], f"import ppl_glmm loaded {loaded['after_import']}"
    assert loaded["after_fit"] == [], f"an ML fit and its tables loaded {loaded['after_fit']}"


def test_lazy_names_resolve_and_are_listed():
    import ppl_glmm
    from ppl_glmm.api import fitglme
    from ppl_glmm.model import GeneralizedLinearMixedModel

    assert ppl_glmm.fitglme is fitglme
    assert ppl_glmm.GeneralizedLinearMixedModel is GeneralizedLinearMixedModel
    assert set(ppl_glmm.__all__) <= set(dir(ppl_glmm))
    assert "TYPE_CHECKING" not in dir(ppl_glmm)
    from ppl_glmm.families import custom_link

    assert ppl_glmm.custom_link is custom_link  # as docs/api.md names it
    with pytest.raises(AttributeError, match="no_such_name"):
        ppl_glmm.no_such_name  # noqa: B018


MANY_GROUPS = """
import json, sys
import numpy as np, pandas as pd
import ppl_glmm
rng = np.random.default_rng(0)
g = rng.integers(0, 250, 600)
x = rng.normal(size=600)
y = rng.poisson(np.exp(0.3 + 0.5 * x + rng.normal(0, 0.5, 250)[g]))
df = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
ppl_glmm.fitglme(df, "y ~ x + (1|g)", distribution="poisson")
print(json.dumps({"numba": "numba" in sys.modules}))
"""


def test_a_small_fit_with_many_groups_imports_no_numba():
    """600 rows, 250 groups: the C backend's fit, whose GLM start factors X'CX (p x p) and whose
    diagonal H is factored elementwise, compiles no sparse-Cholesky kernel (Numba: ~1.4 s)."""
    import pytensor

    if not pytensor.config.cxx:
        pytest.skip("no C++ compiler: small fits use Numba")
    _run(MANY_GROUPS)  # the first run may compile and store the likelihood
    assert _run(MANY_GROUPS) == {"numba": False}


def test_a_small_quadrature_fit_imports_no_numba():
    """On the C backend the quadrature's node values, weights and gradient are NumPy's: its Numba
    kernels would cost a new process ~0.5 s of Numba's start-up (measured: 1.36 -> 1.93 s for a
    whole 180-row nAGQ = 25 script) to save ~3 ms of a warm fit."""
    import pytensor

    if not pytensor.config.cxx:
        pytest.skip("no C++ compiler: small fits use Numba")
    quadrature = 'distribution="poisson", fit_method="quadrature", n_agq=9'
    code = MANY_GROUPS.replace('distribution="poisson"', quadrature)
    _run(code)
    assert _run(code) == {"numba": False}


COLLECTIONS = """
import gc, json
passes = []
gc.callbacks.append(lambda phase, info: phase == "stop" and passes.append(info["generation"]))
import ppl_glmm
from ppl_glmm.datasets import load_mfr
ppl_glmm.fitglme(load_mfr(), "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
                 distribution="Poisson", link="log", dummy_var_coding="effects")
print(json.dumps({"passes": len(passes), "full": passes.count(2), "enabled": gc.isenabled()}))
"""


def test_a_new_process_imports_the_fit_with_the_collector_paused():
    """The seed script's imports (pandas; formulae and SciPy; PyTensor and its C backend) run in
    gc_paused blocks: 362 collector passes (0.4 s, 3 of them full) before, now one pass at the end
    of each block and a few from the fit."""
    _run(COLLECTIONS)  # the first run on a machine may compile and store the likelihood
    seen = _run(COLLECTIONS)
    assert seen["enabled"] is True
    assert seen["full"] == 0
    assert seen["passes"] <= 30, seen


GENERATED_SOURCE = """
import json, os, tempfile
import ppl_glmm
from ppl_glmm.datasets import load_mfr
ppl_glmm.fitglme(load_mfr(), "defects ~ 1 + newprocess + time_dev + (1|factory)", distribution="Poisson")
import pytensor
print(json.dumps({"dir": pytensor.config.generated_src_dir, "compiledir": str(pytensor.config.compiledir),
                  "tmp": sorted(os.listdir(tempfile.gettempdir()))}))
"""


def test_numba_source_is_kept_in_the_compile_directory_not_left_in_the_temporary_one(tmp_path):
    """PyTensor's default writes each Numba function's generated source to a new file in the
    temporary directory and never removes it; ppl_glmm gives it <compiledir>/generated_src."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    flags = ",".join(filter(None, [os.environ.get("PYTENSOR_FLAGS"), "mode=NUMBA"]))
    seen = _run(GENERATED_SOURCE, TMPDIR=str(tmp), PYTENSOR_FLAGS=flags)
    assert seen["dir"] == str(Path(seen["compiledir"]) / "generated_src")
    assert seen["tmp"] == []
    assert any(p.suffix == ".py" for p in Path(seen["dir"]).iterdir())


def test_a_generated_source_directory_the_user_set_is_kept(tmp_path):
    mine = tmp_path / "src"
    extra = ["mode=NUMBA", f"generated_src_dir={mine}"]
    flags = ",".join(filter(None, [os.environ.get("PYTENSOR_FLAGS"), *extra]))
    seen = _run(GENERATED_SOURCE, PYTENSOR_FLAGS=flags)
    assert seen["dir"] == str(mine)
    assert any(p.suffix == ".py" for p in mine.iterdir())


def test_the_command_line_runs_as_a_module_and_refuses_unknown_commands():
    """``python -m ppl_glmm`` is the ``ppl-glmm`` command (it had no ``__main__``): its usage, and
    argparse's error naming the valid command."""
    ok = subprocess.run([sys.executable, "-m", "ppl_glmm", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "usage: ppl-glmm" in ok.stdout and "demo" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "ppl_glmm", "fit"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'fit'" in bad.stderr
