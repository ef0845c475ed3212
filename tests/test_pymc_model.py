"""The PyMC model is the single source of the likelihood: its joint density equals the engine's."""

import numpy as np
import pandas as pd
import pytest
from reference_cases import fit_case

from ppl_glmm.engine.optimize import hessian


@pytest.mark.parametrize("name", ["mfr_poisson_effects", "cbpp_binomial", "sleepstudy_lmm", "binary_slope"])
def test_joint_log_density_equals_engine(fitted, name):
    """log p(y, u | beta, theta, sigma) from pm.Model.compile_logp = sum_i l_i - u'u/2 - q/2 log(2 pi)."""
    m = fitted(name)
    ws, res = m._ws, m._result
    model = ws.graph.model
    problem = m._problem()  # also puts this model's response in the pm.Data container
    point = {"beta": res.beta}
    start = 0
    rng = np.random.default_rng(0)
    u = res.u + rng.normal(0, 0.1, res.u.size)  # any point, not only the mode
    for r, (term, sl) in enumerate(zip(ws.design.terms, ws.layout.slices())):
        point[f"theta_{r}"] = res.theta[sl]
        point[f"u_{r}"] = u[start : start + term.size].reshape(term.n_levels, term.q_r)
        start += term.size
    if ws.dist.has_dispersion:
        point["sigma_log__"] = np.log(res.sigma)
    logp = model.compile_logp(jacobian=False)(point)

    ui = problem.re.to_internal(u)
    avals = problem.re.a_values(ws.layout.lambdas(res.theta), res.sigma if ws.dist.has_dispersion else 1.0)
    eta = ws.design.X @ res.beta + problem.re.mul(avals, ui) + ws.design.offset
    phi = np.full(eta.size, np.log(res.sigma))
    ll = problem.obs(eta, problem.y, problem.w, problem.trials, phi, problem.terms)[0].sum()
    expected = ll - 0.5 * u @ u - 0.5 * u.size * np.log(2 * np.pi)
    assert logp == pytest.approx(expected, rel=1e-12, abs=1e-8)


def test_model_has_data_containers_and_spherical_random_effects(mfr_model):
    model = mfr_model._ws.graph.model
    assert {"y_observed", "weights", "offset", "X", "T_factory", "codes_factory"} <= set(model.named_vars)
    assert {v.name for v in model.free_RVs} == {"beta", "theta_0", "u_0"}
    assert model.observed_RVs[0].name == "defects"  # the observed variable is named after the response
    assert tuple(model.coords["factory_level"])[:3] == ("1", "2", "3")
    assert tuple(model.coords["coef"]) == tuple(mfr_model.coefficient_names)


def test_exact_gradient_matches_finite_differences(fitted):
    for name in ("binary_slope", "sleepstudy_lmm", "cbpp_binomial_approx", "cbpp_probit"):
        m = fitted(name)
        problem = m._problem()
        x = m._result.x + 0.05
        _, g = problem.value_and_grad(x)
        num = np.empty_like(x)
        for k in range(x.size):
            e = np.zeros_like(x)
            e[k] = 1e-6
            num[k] = (problem.value(x + e) - problem.value(x - e)) / 2e-6
        np.testing.assert_allclose(g, num, rtol=2e-5, atol=2e-5)


def test_hessian_at_the_optimum_is_positive_definite(fitted):
    m = fitted("binary_slope")
    H = hessian(m._problem(), m._result.x)
    assert np.all(np.linalg.eigvalsh(H) > 0)


def _no_cxx() -> bool:
    import pytensor

    return not pytensor.config.cxx


BACKENDS = [
    pytest.param("CVM", id="c", marks=pytest.mark.skipif(_no_cxx(), reason="PyTensor has no C++ compiler")),
    pytest.param(None, id="numba"),
]


@pytest.mark.parametrize("mode", BACKENDS)
def test_compiled_observation_function_is_reloaded_from_disk(mfr_model, monkeypatch, mode):
    """A new process loads the pickled function instead of compiling; it captures no model data.
    Both backends a fit may use (C for small fits, Numba for large) are stored."""
    from ppl_glmm import pymc_model

    graph = mfr_model._ws.graph
    fn = pymc_model.observation_function(graph, mode)
    key = pymc_model._KEY_MEMO[(graph.dist, graph.link, mode, 3)]
    assert fn.fn.get_shared() == []  # inputs only: nothing read behind the pm.Data containers' back
    assert fn.data_fn is not None and fn.data_fn.get_shared() == []  # (the Poisson's log y!)
    assert pymc_model._disk_path(key).exists()
    monkeypatch.setattr(pymc_model, "_CACHE", {})
    before = dict(pymc_model.COMPILE_COUNT)
    loaded = pymc_model.observation_function(graph, mode)
    assert pymc_model.COMPILE_COUNT["observation"] == before["observation"]
    assert pymc_model.COMPILE_COUNT["observation_loaded"] == before["observation_loaded"] + 1
    eta = np.linspace(-1, 2, 5)
    args = (
        eta,
        np.arange(5, dtype=loaded.y_dtype),
        np.ones(5),
        np.ones(5, dtype=loaded.trials_dtype),
        np.zeros(5),
    )
    for a, b in zip(loaded(*args), fn(*args)):
        np.testing.assert_array_equal(a, b)
    assert len(loaded.data_terms(*args[1:4])) == len(fn.data_terms(*args[1:4])) > 0


def test_a_stored_function_that_cannot_be_rebuilt_is_recompiled(mfr_model, monkeypatch):
    """The disk cache is an optimisation: a file that fails to load with any error (PyTensor's
    C-linker functions, for one, raise NotImplementedError when unpickled) means a recompilation,
    never a failed fit."""
    import pickle

    from ppl_glmm import pymc_model

    key = mfr_model._problem().obs.key

    def broken(fh):
        raise NotImplementedError("Params is immutable")

    monkeypatch.setattr(pickle, "load", broken)
    assert pymc_model._disk_path(key).exists()
    assert pymc_model._load(key) is None


@pytest.mark.parametrize("mode", BACKENDS)
def test_new_process_finds_the_stored_function_without_building_the_graph(mfr_model, monkeypatch, mode):
    """The disk index maps a built-in (distribution, link) to its graph key: a new process loads the
    stored function without building and hashing the observation graph (start-up time)."""
    from ppl_glmm import pymc_model

    graph = mfr_model._ws.graph
    key = pymc_model.observation_function(graph, mode).key
    monkeypatch.setattr(pymc_model, "_CACHE", {})  # as in a new process
    monkeypatch.setattr(pymc_model, "_KEY_MEMO", {})

    def no_graph(graph):
        raise AssertionError("the observation graph was built")

    monkeypatch.setattr(pymc_model, "_observation_graph", no_graph)
    before = dict(pymc_model.COMPILE_COUNT)
    loaded = pymc_model.observation_function(graph, mode)
    assert loaded.key == key
    assert pymc_model.COMPILE_COUNT["observation_loaded"] == before["observation_loaded"] + 1
    assert pymc_model.COMPILE_COUNT["observation"] == before["observation"]


def test_index_only_names_the_library_s_own_families_and_links(mfr_model, monkeypatch):
    """Custom and power links have no index entry, nor does a link swapped into the registry under a
    built-in name (it may compute something else): those keep the graph hash."""
    import dataclasses

    from ppl_glmm import families, pymc_model

    graph = mfr_model._ws.graph
    assert pymc_model._index_key(graph, None, 3) is not None
    assert pymc_model._index_key(graph, "NUMBA", 3) is None  # an explicit mode is never stored
    assert pymc_model._index_key(graph, None, 3) != pymc_model._index_key(graph, None, 1)
    assert pymc_model._index_key(graph, "CVM", 3) not in (None, pymc_model._index_key(graph, None, 3))
    custom = families.custom_link(lambda e: e**2, np.sqrt, name="square")
    log = families.LINKS["log"]
    swapped = families.Link("log", log.inverse_pt, log.inverse_np, log.link_np)
    monkeypatch.setitem(families.LINKS, "log", swapped)
    for link in (custom, families.power_link(0.5), swapped):
        assert pymc_model._index_key(dataclasses.replace(graph, link=link), None, 3) is None


def test_a_fit_whose_function_is_compiled_builds_the_pymc_model_only_on_use(mfr_model):
    """The ML fit needs only the compiled likelihood (cached per distribution and link), so the
    PyMC model is built on first use; its observed container then holds the last fitted response,
    and later refits swap that container as before."""
    m = fit_case("mfr_poisson_effects")
    assert m._ws._graph is None
    y1, y2 = m.random(rng=5), m.random(rng=6)  # random builds the model (its forward sampler)
    m2 = fit_case("mfr_poisson_effects")
    assert m2._ws._graph is None
    new = m2.refit(y1)
    assert m2._ws._graph is None  # still unbuilt: the refit's response is kept for the container
    np.testing.assert_array_equal(new._ws.graph.containers["y"].get_value(), y1)
    assert new.coefficients["Estimate"].tolist() == m.refit(y1).coefficients["Estimate"].tolist()
    newer = new.refit(y2)  # model built: the container is swapped
    np.testing.assert_array_equal(newer._ws.graph.containers["y"].get_value(), y2)
    assert newer.log_likelihood == pytest.approx(m.refit(y2).log_likelihood, abs=1e-8)  # refit tolerance


def test_stored_function_refers_to_no_pymc_class_and_raises_its_own_support_error():
    """PyMC's parameter checks are recompiled as PyTensor's CheckAndRaise raising
    LikelihoodSupportError (same conditions): loading the function needs no PyMC import, and an
    identity-link Poisson mean below 0 still raises."""
    import pickle
    import pickletools

    from ppl_glmm.errors import LikelihoodSupportError

    obs = _poisson_identity_model()._problem().obs
    ops = {type(node.op).__module__ for node in obs.fn.maker.fgraph.apply_nodes}
    assert not any(mod.startswith("pymc") for mod in ops), ops
    modules = {arg for op, arg, _ in pickletools.genops(pickle.dumps(obs)) if isinstance(arg, str)}
    assert "ppl_glmm.pymc_model" in modules  # the strings include every global's module
    assert not [m for m in modules if m == "pymc" or m.startswith("pymc.")]
    args = (np.ones(3, dtype=obs.y_dtype), np.ones(3), np.ones(3, dtype=obs.trials_dtype), np.zeros(3))
    l0 = obs(np.array([0.5, 1.0, 2.0]), *args)[0]
    np.testing.assert_allclose(l0, [np.log(0.5) - 0.5, -1.0, np.log(2.0) - 2.0], rtol=1e-14)
    with pytest.raises(LikelihoodSupportError):
        obs(np.array([0.5, -1.0, 2.0]), *args)


def _poisson_identity_model():
    import ppl_glmm
    from ppl_glmm.datasets import load_mfr

    return ppl_glmm.fitglme(load_mfr(), "defects ~ 1 + (1|factory)", distribution="poisson", link="identity")


def test_the_store_keeps_what_is_used_and_prunes_what_is_not(tmp_path):
    """prune_store removes stored functions and index entries unused for PyTensor's
    cmodule__age_thresh_use (its rule for its own compiled modules), and nothing else."""
    import os

    import pytensor

    from ppl_glmm import pymc_model

    age = float(pytensor.config.cmodule__age_thresh_use)
    now = 2_000_000_000.0
    names = {
        "observation-poisson-log-old.pkl": now - age - 10,
        "index-old.key": now - age - 10,
        "observation-poisson-log-recent.pkl": now - age + 10,
        "index-recent.key": now - 1,
        "march-old.json": now - 10 * age,  # the backend's compiler probe: not the store's
        "unrelated-old.txt": now - 10 * age,
    }
    for name, mtime in names.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (mtime, mtime))
    removed = pymc_model.prune_store(tmp_path, now=now)
    assert sorted(removed) == ["index-old.key", "observation-poisson-log-old.pkl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - set(removed))
    assert pymc_model.prune_store(tmp_path / "absent", now=now) == []
    from ppl_glmm.errors import InputTypeError

    with pytest.raises(InputTypeError, match="directory: expected a path"):
        pymc_model.prune_store(123)
    with pytest.raises(InputTypeError, match="now: expected a POSIX timestamp"):
        pymc_model.prune_store(tmp_path, now="yesterday")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - set(removed))


def test_loading_a_stored_function_or_reading_its_index_marks_it_used(mfr_model):
    import os
    import time

    from ppl_glmm import pymc_model

    key = mfr_model._problem().obs.key
    path = pymc_model._disk_path(key)
    old = time.time() - 86400 * 100
    os.utime(path, (old, old))
    assert pymc_model._load(key) is not None
    assert path.stat().st_mtime > time.time() - 60
    index = path.parent / "index-test-marks-used.key"
    index.write_text(key)
    os.utime(index, (old, old))
    try:
        assert pymc_model._read_index("test-marks-used") == key
        assert index.stat().st_mtime > time.time() - 60
    finally:
        index.unlink()


@pytest.mark.parametrize(
    "distribution,link",
    [("binomial", "logit"), ("poisson", "log"), ("gamma", "reciprocal"), ("normal", "log")],
)
def test_data_terms_are_computed_once_per_response_and_change_nothing(distribution, link):
    """The likelihood's data-only subexpressions (a Bernoulli's log C(1, y), a Poisson's log y!)
    are inputs computed once per response (``data_terms``): the outputs equal those of the whole
    graph compiled as one function, and a fit calls the data function once, however many times
    it evaluates the likelihood."""
    import pytensor

    import ppl_glmm
    from ppl_glmm import pymc_model
    from ppl_glmm.backend import C_MODE

    rng = np.random.default_rng(5)
    n, g = 120, np.repeat(np.arange(12), 10)
    x = rng.normal(size=n)
    mu = np.exp(0.3 + 0.4 * x + rng.normal(0, 0.4, 12)[g])
    y = {
        "binomial": rng.uniform(size=n) < mu / (1 + mu),
        "poisson": rng.poisson(mu),
        "gamma": rng.gamma(3.0, mu / 3.0),
        "normal": rng.normal(mu, 0.3),
    }[distribution].astype(float)
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    m = ppl_glmm.fitglme(d, "y ~ x + (1|g)", distribution=distribution, link=link)
    obs = pymc_model.observation_function(m._ws.graph, C_MODE)
    assert obs.data_fn is not None
    lp, inputs = pymc_model._observation_graph(m._ws.graph)
    eta_in, phi_in = inputs[0], inputs[4]
    outs = [lp]
    for _ in range(3):
        outs.append(pytensor.grad(outs[-1].sum(), eta_in))
    if obs.has_dispersion:
        outs += [pytensor.grad(o.sum(), phi_in) for o in outs[:3]]
    whole = pytensor.function(inputs, outs, mode=C_MODE, on_unused_input="ignore")
    problem = m._problem()
    eta = m._ws.design.X @ m.coefficients["Estimate"].to_numpy()
    phi = np.full(n, 0.1)
    args = (problem.y, problem.w, problem.trials)
    for a, b in zip(whole(eta, *args, phi), obs(eta, *args, phi, problem.terms)):
        np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-14)

    calls = []
    data_fn = obs.data_fn

    class Counting:
        def __call__(self, *a):
            calls.append(1)
            return data_fn(*a)

    m.refit(m.response())  # (the first refit also sets up its warm start's matrix: another response)
    try:
        object.__setattr__(obs, "data_fn", Counting())
        again = m.refit(m.response())
    finally:
        object.__setattr__(obs, "data_fn", data_fn)
    assert again.log_likelihood == pytest.approx(m.log_likelihood, abs=1e-9)
    assert len(calls) == 1  # one response loaded; the fit's evaluations reuse its terms
