"""The PyMC model every formula compiles into: the single source of the likelihood.

::

    beta ~ Flat(p)                                  fixed effects
    theta_r ~ Flat(q_r (q_r + 1) / 2)               relative Cholesky factor Lambda_r (lower, column-major)
    sigma ~ HalfFlat()                              families with a dispersion (normal, gamma, IG)
    nb_theta ~ HalfFlat()                           negative binomial's theta (not a scale of b)
    u_r ~ N(0, I) of shape (levels_r, q_r)          spherical random effects
    b_r = s * u_r Lambda_r'                         s = sigma with a dispersion, else 1
    eta = X beta + sum_r rowsum(T_r * b_r[codes_r]) + offset
    y ~ Distr(g^-1(eta), ...)                       observed, from pm.Data containers

The observed response, prior weights, binomial trials and offset live in ``pm.Data`` containers, so
``refit`` swaps values without rebuilding or recompiling anything. The estimation engine does not
evaluate this joint density: it takes the model's own observation log-likelihood graph, replaces eta
(and sigma) by inputs, and compiles, once per (distribution, link) and process, the per-observation
derivatives d^k log p(y_i | eta_i) / d eta_i^k, k = 0..3 (and their derivatives in phi, the log of
sigma or theta), with the terms that depend on the data only computed once per response
(:func:`_hoist_data_terms`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .backend import C_MODE, c_backend_start, pymc_cxxflags, write_atomic
from .covariance import ThetaLayout
from .design import Design
from .families import DISTRIBUTIONS, LINKS, Distribution, Link
from .gc_pause import gc_paused
from .names import OBS_DIM, ModelNames

__all__ = [
    "GLMMGraph",
    "LazyModel",
    "ModelSource",
    "ObservationFunction",
    "build_pymc_model",
    "linear_predictor",
    "model_data",
    "observation",
    "observation_function",
    "prune_store",
]


@dataclass
class GLMMGraph:
    """A built PyMC model with handles to the variables the engine and simulator need."""

    model: Any  # pm.Model
    eta: Any
    y: Any  # observed RV
    beta: Any
    thetas: list
    us: list
    sigma: Any | None  # the family's ancillary parameter (sigma, or negative binomial's theta)
    sigma_obs: Any | None  # it, broadcast to one entry per observation
    containers: dict[str, Any]  # name -> pm.Data shared variable
    dist: Distribution
    link: Link

    @property
    def graph(self) -> GLMMGraph:
        """Itself: a built model is its own :class:`ModelSource`."""
        return self

    @property
    def free_parameters(self) -> list:
        return [self.beta, *self.thetas] + ([self.sigma] if self.sigma is not None else [])

    def set_observed(self, k: np.ndarray) -> None:
        """Swap the observed-data container (no recompilation of anything compiled from it)."""
        self.containers["y"].set_value(np.asarray(k, dtype=self.containers["y"].dtype))


# The observed container's dtype for every family (see model_data): part of each likelihood graph's
# identity, known before the model is built.
Y_DTYPE = "float64"


class ModelSource(Protocol):
    """What :func:`observation_function` needs: the family and link, which identify a built-in
    likelihood graph, and the PyMC model itself, built (``graph``) only when its compiled
    function is neither in this process nor on disk."""

    dist: Distribution
    link: Link

    @property
    def graph(self) -> GLMMGraph: ...


class LazyModel:
    """A :class:`ModelSource` whose PyMC model is built by ``build()`` on first use (thread-safe)."""

    def __init__(self, dist: Distribution, link: Link, build: Callable[[], GLMMGraph]):
        self.dist, self.link, self._build = dist, link, build
        self._graph: GLMMGraph | None = None
        self._lock = threading.Lock()

    @property
    def graph(self) -> GLMMGraph:
        if self._graph is None:
            with self._lock:
                if self._graph is None:
                    self._graph = self._build()
        return self._graph


def model_data(design: Design, dist: Distribution, names: ModelNames) -> dict[str, Any]:
    """The ``pm.Data`` containers of a model (call inside its context): X, the observed response,
    prior weights, offset, binomial trials, and each random term's columns T and level codes."""
    import pymc as pm

    k = dist.observed_value(design.y, design.weights, design.binomial_size)
    containers = {"X": pm.Data("X", design.X, dims=(OBS_DIM, "coef"))}
    # Counts are held as float64 (exact below 2^53): PyMC casts integer observed data to int32
    # (``intX``), where a count above 2^31 wraps; float data is cast straight to the count's int64.
    containers["y"] = pm.Data("y_observed", np.asarray(k, dtype=Y_DTYPE), dims=OBS_DIM)
    containers["weights"] = pm.Data("weights", design.weights, dims=OBS_DIM)
    containers["offset"] = pm.Data("offset", design.offset, dims=OBS_DIM)
    if dist.name == "binomial":
        trials = np.rint(design.weights * design.binomial_size).astype(np.int64)
        containers["trials"] = _data_int64("trials", trials)
    for r, (term, tn) in enumerate(zip(design.terms, names.terms)):
        containers[f"T_{r}"] = pm.Data(f"T_{tn.label}", term.T, dims=(OBS_DIM, tn.coef_dim))
        containers[f"codes_{r}"] = pm.Data(f"codes_{tn.label}", term.codes, dims=OBS_DIM)
    return containers


def _data_int64(name: str, value: np.ndarray):
    """A ``pm.Data``-like container that keeps int64 (``pm.Data`` casts integers to int32, so a
    number of trials above 2^31 would wrap). Registered with the model as ``pm.Data`` registers."""
    import pymc as pm
    import pytensor

    x = pytensor.shared(np.asarray(value, dtype=np.int64), name)
    pm.modelcontext(None).register_data_var(x, dims=(OBS_DIM,))
    return x


def linear_predictor(design: Design, containers: dict[str, Any], beta, bs: list) -> Any:
    """eta = X beta + offset + sum_r rowsum(T_r * b_r[codes_r]), b_r of shape (levels_r, q_r).

    Factors known to be 0 or 1 when the model is built are left out of the graph (a model's offset
    never changes after it is built; ``refit`` swaps only the response): a zero offset, and the
    column of ones of an intercept-only term, whose contribution is just ``b_r[codes_r, 0]``. This
    makes each log-density gradient for NUTS about twice as cheap on small models.
    """
    import pytensor.tensor as pt

    eta = pt.dot(containers["X"], beta)
    if np.any(design.offset != 0):
        eta = eta + containers["offset"]
    for r, (term, b) in enumerate(zip(design.terms, bs)):
        codes = containers[f"codes_{r}"]
        if term.q_r == 1 and term.spec.intercept and not term.spec.expr:
            eta = eta + b[codes, 0]
        elif term.q_r == 1:
            eta = eta + containers[f"T_{r}"][:, 0] * b[codes, 0]
        else:
            eta = eta + (containers[f"T_{r}"] * b[codes]).sum(axis=1)
    return eta


def observation(names: ModelNames, dist: Distribution, link: Link, containers: dict[str, Any], eta, sigma):
    """The observed variable y | eta (and sigma), named after the response: the likelihood of every model."""
    import pytensor.tensor as pt

    sigma_obs = sigma * pt.ones_like(containers["weights"]) if sigma is not None else None
    y = dist.likelihood(names.response, eta, link, containers, sigma_obs, OBS_DIM)
    return y, sigma_obs


def build_pymc_model(design: Design, dist: Distribution, link: Link, layout: ThetaLayout) -> GLMMGraph:
    """The ML parametrisation: flat beta and theta, u ~ N(0, I), b_r = s u_r Lambda_r'."""
    import pymc as pm
    import pytensor.tensor as pt

    names = ModelNames.from_design(design, dist)
    with pm.Model(coords=names.coords()) as model:
        containers = model_data(design, dist, names)
        beta = pm.Flat("beta", dims="coef")
        sigma = pm.HalfFlat(dist.ancillary.name) if dist.has_ancillary else None
        scale = sigma if dist.has_dispersion else 1.0
        thetas, us, bs = [], [], []
        for r, (tn, sl) in enumerate(zip(names.terms, layout.slices())):
            q = tn.q
            theta = pm.Flat(f"theta_{r}", shape=(sl.stop - sl.start,))
            rows, cols = np.triu_indices(q)
            Lam = pt.set_subtensor(pt.zeros((q, q))[cols, rows], theta)
            u = pm.Normal(f"u_{r}", 0.0, 1.0, dims=(tn.level_dim, tn.coef_dim))
            bs.append(scale * pt.dot(u, Lam.T))
            thetas.append(theta)
            us.append(u)
        eta = linear_predictor(design, containers, beta, bs)
        y, sigma_obs = observation(names, dist, link, containers, eta, sigma)
    return GLMMGraph(model, eta, y, beta, thetas, us, sigma, sigma_obs, containers, dist, link)


_THREAD_LOCAL = threading.local()


@dataclass(frozen=True)
class ObservationFunction:
    """Compiled per-observation log-likelihood derivatives of one likelihood graph.

    Calling it with ``(eta, y, weights, trials, phi)`` returns ``[l, l_e, l_ee, l_eee]`` and, for
    families with a dispersion, ``[l_p, l_ep, l_eep]`` (derivatives in phi = log sigma); all arrays
    of length n. A compiled PyTensor function keeps its inputs and outputs in storage of its own, so
    one object must not run in two threads at once: the main thread calls ``fn``, and every other
    thread a copy of its own (``Function.copy``: new storage, same compiled code; ~40 ms, once per
    thread and function).
    """

    fn: Callable
    has_dispersion: bool  # takes phi (log sigma or log theta) and returns its derivatives
    y_dtype: str
    trials_dtype: str
    key: str = ""  # graph_key of the likelihood graph it was compiled from
    phi_scales_re: bool = True  # phi = log sigma also scales the random effects (not NB's theta)
    orders: int = 3  # 1: [l, l_e] (and l_p) at (K, n) quadrature nodes (eta, phi (K, n); y, w, trials (n,))
    data_fn: Callable | None = None  # (y, weights, trials) -> the data terms ``fn`` takes after phi

    def data_terms(self, y, weights, trials) -> tuple:
        """The likelihood's terms that depend on the data only (:func:`_hoist_data_terms`), for
        :meth:`__call__`'s ``terms``: computed once per response, not at every evaluation."""
        if self.data_fn is None:
            return ()
        return tuple(self._function(self.data_fn)(y, weights, trials))

    def __call__(self, eta, y, weights, trials, phi, terms: tuple | None = None):
        """[l, l_e, ...] at eta; ``terms``: :meth:`data_terms` of (y, weights, trials), computed
        here when not given."""
        if terms is None:
            terms = self.data_terms(y, weights, trials)
        return self._function(self.fn)(eta, y, weights, trials, phi, *terms)

    def _function(self, fn: Callable) -> Callable:
        """``fn`` in the main thread, else this thread's copy of it."""
        if threading.current_thread() is threading.main_thread():
            return fn
        copies = _THREAD_LOCAL.__dict__.setdefault("functions", {})
        own = copies.get(id(fn))
        if own is None:
            own = fn.copy()
            own.trust_input = True
            copies[id(fn)] = own  # functions in _CACHE live as long as the process
        return own


_CACHE: dict[str, ObservationFunction] = {}  # graph key -> compiled function (this process)
_KEY_MEMO: dict[tuple, str] = {}  # (distribution, link, y dtype, dispersion, mode) -> graph key
_CACHE_LOCK = threading.Lock()
COMPILE_COUNT = {"observation": 0, "sampler": 0, "observation_loaded": 0}


def graph_key(graph: GLMMGraph, lp, inputs: list) -> str:
    """Identity of an observation log-likelihood graph: a hash of its printed structure (every op,
    type and constant), its inputs' types, and every version involved. Two models share a compiled
    function exactly when their likelihood graphs are the same; any change to a family, a link or
    PyMC's logp gives a new key, so a stale function is never reused."""
    import hashlib
    import sys

    import pymc
    import pytensor
    from pytensor.graph.fg import FunctionGraph
    from pytensor.printing import debugprint

    from . import __version__

    fg = FunctionGraph(inputs, [lp], clone=True)
    for v in fg.variables:  # names (e.g. the response's) do not change the computation
        v.name = None
    text = debugprint(fg, file="str", print_type=True)
    tag = "|".join([text, pymc.__version__, pytensor.__version__, np.__version__, sys.version, __version__])
    digest = hashlib.sha256(tag.encode()).hexdigest()[:24]
    return f"{graph.dist.name}-{graph.link.name}-{digest}"


_STORED_MODES = (None, C_MODE)  # the modes whose functions are stored on disk and indexed


def _backend_tag(mode) -> str:
    """The key's suffix naming the PyTensor backend: none for the default (``mode`` None with
    PyTensor's default mode and linker: Numba), else the mode, or the configured mode and linker
    (``PYTENSOR_FLAGS=linker=cvm`` compiles with the C backend, and must not load the Numba
    function stored for the default)."""
    if mode is not None:
        return f"-{mode}"
    import pytensor

    config_mode, linker = str(pytensor.config.mode), str(pytensor.config.linker)
    return "" if (config_mode, linker) == ("Mode", "auto") else f"-{config_mode}-{linker}"


def _disk_path(key: str):
    """Pickled compiled function in PyTensor's compile directory."""
    from pathlib import Path

    import pytensor

    return Path(pytensor.config.compiledir) / "ppl_glmm" / f"observation-{key}.pkl"


def _source_digest() -> str:
    """A hash of the modules that define observation graphs (the families and this one), so an
    edited family never reuses an index entry written by the old code of the same version."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        import hashlib
        from pathlib import Path

        here = Path(__file__).resolve().parent
        h = hashlib.sha256()
        try:
            for name in ("families.py", "pymc_model.py"):
                h.update((here / name).read_bytes())
            _SOURCE_DIGEST = h.hexdigest()
        except OSError:  # no source files (a zipped or frozen install): no index
            _SOURCE_DIGEST = ""
    return _SOURCE_DIGEST


_SOURCE_DIGEST: str | None = None


# The library's own families and links, as defined when it was imported: only these are named by
# an index entry (a Link or Distribution made or swapped in later, even under a built-in name, may
# compute something else, and keeps the graph hash).
_REGISTERED = (*DISTRIBUTIONS.values(), *LINKS.values())


def _index_key(source: ModelSource, mode, orders: int) -> str | None:
    """Name of the index entry that maps a built-in (distribution, link) to its :func:`graph_key`.

    A new process reads the graph key from this entry and loads the stored function without
    building the PyMC model or its observation graph, and without importing PyMC (~0.7 s of a
    fresh fit; ~25 ms of every later fit of a new model). The name
    hashes everything the graph is a function of -- distribution and link names, the response
    dtype, the ancillary input, the orders, the backend -- with the versions :func:`graph_key`
    hashes and the source of the modules that build the graph. None unless the distribution and
    the link are the library's registered objects (not a custom or power link, nor one swapped into
    the registry later), and for a mode other than the default and :data:`C_MODE`.
    """
    registered = any(o is source.dist for o in _REGISTERED) and any(o is source.link for o in _REGISTERED)
    if mode not in _STORED_MODES or not registered or not _source_digest():
        return None
    import hashlib
    import sys
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:  # the installed versions, read without importing PyMC (start-up time)
        versions = [version("pymc"), version("pytensor")]
    except PackageNotFoundError:  # pragma: no cover - not an installed distribution: no index
        return None
    parts = [
        source.dist.name,
        source.link.name,
        Y_DTYPE,
        str(source.dist.has_ancillary),
        str(orders),
        _backend_tag(mode),
        _source_digest(),
        *versions,
        np.__version__,
        sys.version,
        __version__,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _read_index(name: str) -> str | None:
    path = _disk_path("").parent / f"index-{name}.key"
    try:
        key = path.read_text().strip()
    except OSError:
        return None
    _mark_used(path)
    return key if key and "/" not in key and "\\" not in key else None


def _mark_used(path) -> None:
    """Set ``path``'s modification time to now: :func:`prune_store` removes what was not used for
    PyTensor's ``cmodule__age_thresh_use`` (its own rule for compiled modules)."""
    import os

    try:
        os.utime(path)
    except OSError:
        pass


def prune_store(directory=None, now: float | None = None) -> list[str]:
    """Remove the stored functions and index entries (``observation-*.pkl``, ``index-*.key``) of
    ``directory`` (default ``<compiledir>/ppl_glmm``) not used for ``cmodule__age_thresh_use``
    seconds (24 days unless configured), as PyTensor does with its compiled modules; return their
    names. A load or index lookup marks its file used. Run by every process that stores a new
    function (which has just compiled: seconds, against this directory listing's milliseconds):
    without it the store only grows, by about 0.5 MB a family, link and library version.
    Files another process removes meanwhile are skipped; a process that finds its file gone
    recompiles it."""
    import os
    import time
    from pathlib import Path

    import pytensor

    from .errors import InputTypeError

    if directory is not None and not isinstance(directory, str | os.PathLike):
        raise InputTypeError(
            f"directory: expected a path (str or os.PathLike), got {type(directory).__name__}; "
            "omit it for <compiledir>/ppl_glmm"
        )
    if now is not None and (isinstance(now, bool) or not isinstance(now, int | float)):
        raise InputTypeError(f"now: expected a POSIX timestamp (a number), got {type(now).__name__}")
    folder = Path(directory) if directory is not None else _disk_path("").parent
    limit = (time.time() if now is None else now) - float(pytensor.config.cmodule__age_thresh_use)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (
            (name.startswith("observation-") and name.endswith(".pkl"))
            or (name.startswith("index-") and name.endswith(".key"))
        ):
            continue
        try:
            if entry.stat().st_mtime < limit:
                os.unlink(entry.path)
                removed.append(name)
        except OSError:
            pass
    return removed


def _write_index(name: str, key: str) -> None:
    path = _disk_path("").parent / f"index-{name}.key"
    try:
        if path.exists() and path.read_text().strip() == key:
            _mark_used(path)
            return
    except OSError:
        pass
    write_atomic(path, key)  # the index is an optimisation only


def _load(key: str) -> ObservationFunction | None:
    """The stored function, or None. A C function's file names the C modules it uses first:
    a new process starts PyTensor's C module cache with those only (:mod:`.c_module_cache`).
    Those are the modules its unpickled graph looks up, which may differ from the ones its
    compilation looked up (a rebuilt node can hash differently): a load that finds other
    modules rewrites the list."""
    import pickle

    path = _disk_path(key)
    if not path.exists():
        return None
    try:
        with path.open("rb") as fh:
            modules, blob = pickle.load(fh)
        with gc_paused():  # unpickling imports the backend's modules: see ppl_glmm.gc_pause
            if modules:
                from .c_module_cache import preload, recording

                preload(modules)
                with recording() as used:
                    out = pickle.loads(blob)
                if used != set(modules):
                    write_atomic(path, pickle.dumps((tuple(sorted(used)), blob)))
            else:
                out = pickle.loads(blob)
        out.fn.trust_input = True
        if getattr(out, "data_fn", None) is not None:
            out.data_fn.trust_input = True
        _mark_used(path)
    except Exception:  # a cache: a partial file, one written by other library versions, or one
        return None  # a backend cannot rebuild (PyTensor errors of any class): recompile
    return out if isinstance(out, ObservationFunction) else None


def _store(key: str, out: ObservationFunction, modules: Sequence[str] = ()) -> None:
    """Keep ``out`` on disk as (names of the C module directories it uses, pickled function)."""
    import pickle

    if out.fn.get_shared() or (out.data_fn is not None and out.data_fn.get_shared()):
        # only self-contained functions (no data captured) may be cached
        return
    try:
        data = pickle.dumps((tuple(sorted(modules)), pickle.dumps(out)))
    except pickle.PicklingError:  # caching is an optimisation only
        return
    write_atomic(_disk_path(key), data)
    prune_store()


def _own_support_checks():
    """A rewrite turning PyMC's parameter checks (``CheckParameterValue``: raise if mu < 0, ...)
    into PyTensor's plain ``CheckAndRaise`` raising :class:`~ppl_glmm.errors.LikelihoodSupportError`,
    with the same conditions and message. The compiled function then refers to no PyMC class, so
    loading it from disk in a new process does not import PyMC (~0.5 s of start-up)."""
    from pymc.logprob.utils import CheckParameterValue
    from pytensor.graph.rewriting.basic import in2out, node_rewriter
    from pytensor.raise_op import CheckAndRaise

    from .errors import LikelihoodSupportError

    @node_rewriter([CheckParameterValue])
    def own_check(fgraph, node):
        return [CheckAndRaise(LikelihoodSupportError, node.op.msg)(*node.inputs)]

    return in2out(own_check, name="ppl_glmm_support_checks")


def _observation_graph(graph: GLMMGraph):
    """The model's observation log-density with eta, y, weights, trials (and sigma) as inputs."""
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.compile.sharedvalue import SharedVariable

    try:
        from pytensor.graph.traversal import ancestors
    except ImportError:  # pragma: no cover - pytensor < 3.3
        from pytensor.graph.basic import ancestors
    from pytensor.graph.replace import graph_replace

    c = graph.containers
    value = graph.model.rvs_to_values[graph.y]
    logp = pm.logp(graph.y, value)
    eta_in = pt.vector("eta", dtype="float64")
    y_in = c["y"].type("y")
    w_in = pt.vector("weights", dtype="float64")
    trials_in = c["trials"].type("trials") if "trials" in c else pt.vector("trials", dtype="int64")
    phi_in = pt.vector("phi", dtype="float64")
    repl = {graph.eta: eta_in, c["y"]: y_in, c["weights"]: w_in}
    if "trials" in c:
        repl[c["trials"]] = trials_in
    if graph.sigma is not None:
        repl[graph.sigma_obs] = pt.exp(phi_in)
    obs_length = graph.model.dim_lengths.get(OBS_DIM)
    if isinstance(obs_length, SharedVariable):  # PyMC >= 6.4 keeps dim lengths as shared variables
        repl[obs_length] = eta_in.shape[0]
    lp = graph_replace(logp, repl, strict=False)
    # Stabilise before differentiating: e.g. log(1 - sigmoid(x)) -> -softplus(x). Rewrites applied
    # only after pytensor.grad would leave derivative terms such as s(1 - s) / (1 - s) = 0/0 where
    # p rounds to 1. The log1mexp rewrites are left out here: log1mexp's own derivative,
    # -1 / expm1(-x), differentiates to inf / inf where exp(-x) overflows.
    from pytensor.graph.rewriting.utils import rewrite_graph

    lp = rewrite_graph(
        lp,
        include=("canonicalize", "stabilize"),
        exclude=("local_log1p_plusminus_exp", "logmexpm1_to_log1mexp"),
        custom_rewrite=_own_support_checks(),
    )
    captured = [a for a in ancestors([lp]) if isinstance(a, SharedVariable)]
    if captured:  # pragma: no cover - would mean the engine reads data behind the containers' back
        raise RuntimeError(f"observation log-likelihood still depends on model data: {captured}")
    return lp, [eta_in, y_in, w_in, trials_in, phi_in]


# Scalar ops whose data-only subexpressions are worth computing once per response (a Poisson's
# log y!, a binomial's log C(n, k), log y in the gamma): transcendental functions. Arithmetic and
# comparisons on the data are left in place, where reading a stored vector would cost as much.
_COSTLY_OPS = frozenset(
    ["gammaln", "log", "log1p", "log2", "log10", "exp", "expm1", "exp2", "psi", "tri_gamma",
     "polygamma", "sqrt", "pow", "softplus", "log1mexp", "erf", "erfc", "erfcx", "erfinv",
     "erfcinv", "gamma", "sigmoid", "betaln", "xlogx", "xlogy0", "true_div"]
)  # fmt: skip


def _costly(var, data_only: dict) -> bool:
    """Whether the data-only subgraph computing ``var`` holds a costly scalar op."""
    seen, stack = set(), [var]
    while stack:
        v = stack.pop()
        if v.owner is None or id(v) in seen:
            continue
        seen.add(id(v))
        scalar = getattr(v.owner.op, "scalar_op", None)
        inner = getattr(scalar, "fgraph", None)  # a Composite: its own scalar graph
        names = {type(scalar).__name__.lower()} if scalar is not None else set()
        if inner is not None:
            names |= {type(getattr(n.op, "scalar_op", n.op)).__name__.lower() for n in inner.apply_nodes}
        if names & _COSTLY_OPS:
            return True
        stack.extend(i for i in v.owner.inputs if data_only.get(i, False))
    return False


def _hoist_data_terms(inputs: list, outputs: list) -> tuple[list, list, list]:
    """Split the observation derivatives' graph: every maximal subexpression that depends on the
    data (y, weights, trials) and not on eta or phi, and holds a costly op (:data:`_COSTLY_OPS`),
    becomes an input of its own. Returns (the outputs in terms of those inputs, the new inputs,
    the subexpressions as functions of the data). The engine computes the subexpressions once per
    response (``ObservationFunction.data_terms``), not at every evaluation of the likelihood: a
    Bernoulli model's log C(1, y) (three gammaln per row) took half of each call. Identical
    subexpressions of the value and its derivatives are merged first (PyTensor's merge rewrite:
    no algebraic change), so each term is one input."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.replace import graph_replace
    from pytensor.graph.rewriting.basic import MergeOptimizer

    eta_in, y_in, w_in, trials_in, phi_in = inputs
    fg = FunctionGraph(inputs, outputs, clone=False)
    MergeOptimizer().rewrite(fg)
    outputs = list(fg.outputs)
    data = {y_in, w_in, trials_in}
    data_only: dict = {eta_in: False, phi_in: False, **dict.fromkeys(data, True)}
    uses_data: dict = {v: v in data for v in inputs}
    order = fg.toposort()
    for node in order:
        ins = [i for i in node.inputs if not isinstance(i, Constant)]
        only = all(data_only.get(i, False) for i in ins)
        used = any(uses_data.get(i, False) for i in ins)
        for o in node.outputs:
            data_only[o], uses_data[o] = only, used
    terms: list = []
    for node in order:
        if all(data_only[o] for o in node.outputs):
            continue
        for i in node.inputs:
            if (
                i.owner is not None
                and data_only.get(i, False)
                and uses_data.get(i, False)
                and i.type.ndim >= 1
                and i not in terms
                and _costly(i, data_only)
            ):
                terms.append(i)
    if not terms:
        return outputs, [], []
    new_inputs = [t.type(f"data_term_{k}") for k, t in enumerate(terms)]
    return graph_replace(outputs, dict(zip(terms, new_inputs)), strict=False), new_inputs, terms


def _node_graph(lp, inputs: list) -> tuple[list, object]:
    """The log-likelihood at K nodes per row: eta and phi become (K, n) matrices, while y, weights
    and trials stay (n,) vectors broadcast over the nodes (PyTensor's ``vectorize_graph``). What
    depends on the data only, e.g. a Poisson's log y!, is then computed once per row, not K times
    (about 1.5x faster at K = 25 than tiling the data), and the data are never copied K times."""
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph

    eta_in, y_in, w_in, trials_in, phi_in = inputs
    eta_nodes = pt.matrix("eta_nodes", dtype="float64")
    phi_nodes = pt.matrix("phi_nodes", dtype="float64")
    lp_nodes = vectorize_graph(lp, replace={eta_in: eta_nodes, phi_in: phi_nodes})
    return [eta_nodes, y_in, w_in, trials_in, phi_nodes], lp_nodes


def observation_function(
    source: ModelSource, mode: str | None = None, orders: int = 3
) -> ObservationFunction:
    """Compile the derivatives of the model's observation log-likelihood graph (once per graph).

    ``source`` is a built model (:class:`GLMMGraph`) or anything with ``dist``, ``link`` and a
    ``graph`` built on first use (a fit's workspace, :class:`LazyModel`): the PyMC model is built
    only when its function is neither in this process nor indexed on disk.

    ``orders=3`` (the engine's): l and its first three eta-derivatives, and for a family with an
    ancillary parameter l_p, l_ep, l_eep. ``orders=1``: l, l_e (and l_p) only, for the quadrature's
    nodes, where the higher derivatives are not needed (a separate, smaller compiled function); it
    takes eta and phi as (K, n) matrices of node values and y, weights, trials as (n,) vectors, and
    returns (K, n) arrays (:func:`_node_graph`).
    ``mode``: the PyTensor mode; fits pass :func:`engine_mode` of their size (None: PyTensor's
    default).

    The compiled function takes only inputs (no data is captured), so it is also kept, pickled with
    its already-optimised graph, in PyTensor's compile directory under :func:`graph_key`: a new
    process loads it instead of rewriting and compiling the derivative graph. For a built-in
    distribution and link an index entry (:func:`_index_key`) holds that key, so a new process need
    not build and hash the graph to find it. The in-process cache is guarded by a lock; two threads
    never compile the same graph twice.
    """
    # In one process a likelihood graph is a function of the family and link objects (their code
    # cannot change; a replaced Link is another object; the response dtype is always Y_DTYPE):
    # remember each one's key, so later models skip building the model and hashing the graph.
    memo = (source.dist, source.link, mode, orders)
    with _CACHE_LOCK:
        known = _KEY_MEMO.get(memo)
        if known is not None and known in _CACHE:
            return _CACHE[known]
    with c_backend_start():  # loading or compiling: the C backend's start-up, answered quickly
        return _find_or_compile(source, mode, orders, memo)


def _find_or_compile(source: ModelSource, mode: str | None, orders: int, memo: tuple) -> ObservationFunction:
    """The function from this process's cache, the disk (through the index, or the graph's key),
    or compiled and stored."""
    import pytensor

    index = _index_key(source, mode, orders)
    if index is not None:  # a new process: the graph key from the index, the function from disk
        known = _read_index(index)
        with _CACHE_LOCK:
            loaded = _CACHE.get(known) if known is not None else None
            if known is not None and loaded is None:
                loaded = _load(known)
                if loaded is not None and (loaded.key, loaded.orders) == (known, orders):
                    COMPILE_COUNT["observation_loaded"] += 1
                    _CACHE[known] = loaded
                else:
                    loaded = None
            if loaded is not None:
                _KEY_MEMO[memo] = known
                return loaded
    graph = source.graph
    if graph.containers["y"].dtype != Y_DTYPE or (graph.sigma is not None) != graph.dist.has_ancillary:
        raise RuntimeError("the PyMC model's response dtype or ancillary input is not what its key assumes")
    lp, inputs = _observation_graph(graph)
    # orders=1 takes (K, n) nodes (:func:`_node_graph`): "k" keeps it apart from the per-row
    # function that orders=1 named before; "h": orders=3 takes its data terms as inputs
    key = graph_key(graph, lp, inputs) + ("-h" if orders == 3 else f"-o{orders}k") + _backend_tag(mode)
    if index is not None:
        _write_index(index, key)
    with _CACHE_LOCK:
        _KEY_MEMO[memo] = key
        if key in _CACHE:
            return _CACHE[key]
        if mode in _STORED_MODES:
            loaded = _load(key)
            if loaded is not None:
                COMPILE_COUNT["observation_loaded"] += 1
                _CACHE[key] = loaded
                return loaded
        eta_in, _, _, _, phi_in = inputs
        if orders == 1:  # values and first derivatives only, at quadrature nodes
            inputs, lp = _node_graph(lp, inputs)
            eta_in, phi_in = inputs[0], inputs[4]
            d1 = pytensor.grad(lp.sum(), eta_in)
            outputs = [lp, d1] + ([pytensor.grad(lp.sum(), phi_in)] if graph.sigma is not None else [])
        else:
            d1 = pytensor.grad(lp.sum(), eta_in)
            d2 = pytensor.grad(d1.sum(), eta_in)
            d3 = pytensor.grad(d2.sum(), eta_in)
            outputs = [lp, d1, d2, d3]
            if graph.sigma is not None:
                outputs += [
                    pytensor.grad(lp.sum(), phi_in),
                    pytensor.grad(d1.sum(), phi_in),
                    pytensor.grad(d2.sum(), phi_in),
                ]
        term_inputs: list = []
        term_outputs: list = []
        if orders == 3:  # (at the nodes the data are (n,) vectors already: computed once per call)
            outputs, term_inputs, term_outputs = _hoist_data_terms(inputs, outputs)
        pymc_cxxflags()  # building the model imported PyMC, which appended its flags again
        data_fn = None
        with _recording_c_modules(mode) as modules:
            fn = pytensor.function(inputs + term_inputs, outputs, mode=mode, on_unused_input="ignore")
            if term_outputs:
                data_fn = pytensor.function(inputs[1:4], term_outputs, mode=mode, on_unused_input="ignore")
                data_fn.trust_input = True
        fn.trust_input = True
        COMPILE_COUNT["observation"] += 1
        out = ObservationFunction(
            fn,
            graph.sigma is not None,
            inputs[1].dtype,
            inputs[3].dtype,
            key,
            graph.dist.has_dispersion,
            orders,
            data_fn,
        )
        _CACHE[key] = out
        if mode in _STORED_MODES:
            _store(key, out, modules)
        return out


@contextmanager
def _recording_c_modules(mode) -> Iterator[set[str]]:
    """The C module directories a compilation in ``mode`` uses (:func:`.c_module_cache.recording`);
    an empty set for the default backend (Numba, no C modules) or where PyTensor has no compiler."""
    import pytensor

    c_linker = mode == C_MODE or (mode is None and str(pytensor.config.linker).startswith("c"))
    if not (c_linker and pytensor.config.cxx):  # (the C linkers: cvm, cvm_nogc, c, c|py...)
        yield set()
        return
    from .c_module_cache import recording

    with recording() as names:
        yield names
