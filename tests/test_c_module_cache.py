"""A new process's C module cache holds only the keys its stored function needs (ppl_glmm.c_module_cache).

PyTensor's own cache would unpickle the key of every module in the compile directory (~5 ms each);
the test suite leaves dozens there. The probes run in new processes (this one's cache is started).
"""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, pickle
{pre}
import ppl_glmm
from ppl_glmm.datasets import load_mfr
from ppl_glmm.pymc_model import _CACHE
glme = ppl_glmm.fitglme(load_mfr(), "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
                        distribution="Poisson", link="log", dummy_var_coding="effects")
from pytensor.link.c import cmodule
cache = cmodule._module_cache
complete = lambda: getattr(cache, "complete", None)  # (PyTensor's own cache has no such flag)
after_fit = dict(kind=type(cache).__name__, keys=sorted(cache.loaded_key_pkl), complete=complete(),
                 compiled=cache.stats[2])
if {other}:  # a C function the fit does not use: found through PyTensor's full refresh
    import pytensor, pytensor.tensor as pt
    x = pt.dvector("x")
    pytensor.function([x], pt.exp(x) * 3.25 + x ** 3, mode="CVM")
stored = [pickle.loads(ppl_glmm.pymc_model._disk_path(k).read_bytes())[0] for k in _CACHE]
print(json.dumps(dict(after_fit=after_fit, stored=stored, dirname=str(cache.dirname),
                      complete=complete(), compiled=cache.stats[2], loglik=glme.log_likelihood)))
"""


def _run(code: str) -> dict:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _probe(other: bool, pre: str = "") -> dict:
    return _run(PROBE.format(other=other, pre=pre))


@pytest.fixture(scope="module")
def needs_cxx():
    import pytensor

    if not pytensor.config.cxx:
        pytest.skip("no C++ compiler: fits use Numba, and no C module is made")


def test_a_stored_function_starts_the_cache_with_its_own_modules_only(needs_cxx):
    _probe(other=True)  # compiles and stores what is missing, records the modules' directories
    first = _probe(other=False)  # a load rewrites the list if its graph looks up other modules
    probe = _probe(other=False)
    assert probe["loglik"] == first["loglik"]
    [stored] = probe["stored"]
    assert stored, "a C function's file names its modules"
    expected = sorted(os.path.join(probe["dirname"], name, "key.pkl") for name in stored)
    cache = probe["after_fit"]
    assert cache["kind"] == "TargetedModuleCache"
    assert cache["keys"] == expected
    assert (cache["complete"], cache["compiled"]) == (False, 0)
    in_directory = [d for d in Path(probe["dirname"]).iterdir() if (d / "key.pkl").exists()]
    assert len(in_directory) > len(stored)  # the others (the suite's, the probe's own) stay unread


def test_a_process_that_imported_pymc_looks_up_the_same_modules(needs_cxx):
    """Importing PyMC appends compiler flags to PyTensor's, and every C module's key holds them: a
    process that imported PyMC (a user's script, a bootstrap worker) found other modules and
    rewrote the list, and the next process without PyMC missed, refreshed the whole cache and
    imported PyMC while unpickling its keys (ppl_glmm.backend.pymc_cxxflags)."""
    with_pymc = _probe(other=False, pre="import pymc")
    probe = _probe(other=False)
    assert probe["stored"] == with_pymc["stored"]
    [stored] = probe["stored"]
    cache = probe["after_fit"]
    assert (cache["kind"], cache["complete"], cache["compiled"]) == ("TargetedModuleCache", False, 0)
    assert len(cache["keys"]) == len(stored)


FLAGS = """
import json
from pytensor import config
before = str(config.gcc__cxxflags)
import pymc
after = str(config.gcc__cxxflags)
from ppl_glmm.backend import pymc_cxxflags
pymc_cxxflags()
print(json.dumps([before, after, str(config.gcc__cxxflags)]))
"""


def test_the_flags_are_those_importing_pymc_appends():
    from ppl_glmm.backend import PYMC_CXXFLAGS

    before, after, canonical = _run(FLAGS)
    assert after.split() == before.split() + list(PYMC_CXXFLAGS)
    assert canonical.split() == after.split()  # once imported, nothing to add


def test_the_flags_are_added_once_after_the_others(monkeypatch):
    from pytensor import config

    from ppl_glmm.backend import PYMC_CXXFLAGS, pymc_cxxflags

    twice = " ".join(["-O2", *PYMC_CXXFLAGS, "-g", *PYMC_CXXFLAGS])
    monkeypatch.setattr(config, "gcc__cxxflags", twice)
    pymc_cxxflags()
    assert config.gcc__cxxflags.split() == ["-O2", "-g", *PYMC_CXXFLAGS]


def test_a_module_not_preloaded_is_found_not_recompiled(needs_cxx):
    _probe(other=True)
    probe = _probe(other=True)
    assert probe["after_fit"]["complete"] is False
    assert probe["complete"] is True  # the lookup missed, PyTensor refreshed the whole cache...
    assert probe["compiled"] == 0  # ...and found the module the earlier probe compiled


def test_unusable_names_are_skipped_and_the_exit_skips_clear_old(needs_cxx, monkeypatch, tmp_path):
    from pytensor import config

    from ppl_glmm.c_module_cache import TargetedModuleCache

    base = Path(config.compiledir)
    usable = [d.name for d in sorted(base.iterdir()) if (d / "key.pkl").exists() and d.name.startswith("tmp")]
    if not usable:
        pytest.skip("no C module in the compile directory yet")
    broken = base / "tmp_ppl_glmm_test_broken"
    broken.mkdir(exist_ok=True)
    try:
        (broken / "key.pkl").write_bytes(b"not a pickle")
        (broken / "m.so").write_bytes(b"")
        cache = TargetedModuleCache(base, [usable[0], "no-such-module", broken.name, usable[0]])
    finally:
        for f in broken.iterdir():
            f.unlink()
        broken.rmdir()
    assert cache.loaded_key_pkl == {os.path.join(base, usable[0], "key.pkl")}
    key_data = pickle.loads((base / usable[0] / "key.pkl").read_bytes())
    assert set(cache.entry_from_key) == set(key_data.keys)
    assert cache.complete is False

    def clear_old(*args, **kwargs):
        raise AssertionError("clear_old would unpickle every key in the directory")

    monkeypatch.setattr(cache, "clear_old", clear_old)
    monkeypatch.setattr(cache, "clear_unversioned", lambda: None)
    cache._on_atexit()
    cache.complete = True
    with pytest.raises(AssertionError, match="every key"):
        cache._on_atexit()


def test_recording_blocks_nest_and_restore_the_lookup(needs_cxx):
    import pytensor
    import pytensor.tensor as pt
    from pytensor.link.c.basic import get_module_cache

    from ppl_glmm.c_module_cache import recording

    x = pt.dvector("x")
    with recording() as outer:
        pytensor.function([x], x * 2.5 + 1.0, mode="CVM")
        with recording() as inner:
            pytensor.function([x], pt.log1p(x) * 0.5, mode="CVM")
        assert "module_from_key" in vars(get_module_cache())  # the outer block still records
    assert "module_from_key" not in vars(get_module_cache())
    assert inner and inner <= outer and len(outer) > len(inner)
    for name in outer:
        assert (Path(get_module_cache().dirname) / name / "key.pkl").exists()
