"""Simulation from a fitted model through PyMC's forward sampling (MATLAB ``random``).

New spherical random effects u ~ N(0, I) are drawn from their prior (so b ~ N(0, Psi-hat)) and a
new response from the conditional distribution given them, with beta, theta and sigma fixed at the
ML estimates. The sampler is compiled once per workspace with
``pymc.sampling.forward.compile_forward_sampling_function`` (u and y are volatile, the parameters
are inputs) and reseeded per call, so the same seed gives the same draw.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError, warn
from .pymc_model import COMPILE_COUNT, GLMMGraph

__all__ = ["ForwardSampler", "seed_from", "simulate_fitted_rows", "simulate_new_rows"]


def seed_from(rng) -> int | None:
    """An integer seed from None, an int or a numpy Generator."""
    if rng is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise InputError(f"rng: a seed must be a non-negative integer, got {rng}")
        return int(rng)
    raise InputTypeError(
        f"rng: expected None, a non-negative integer seed or a numpy Generator, got {type(rng).__name__}"
    )


@dataclass
class ForwardSampler:
    """A compiled forward-sampling function and its random generators. Reseeding and drawing run
    under a lock: the generators are state shared by every call."""

    fn: Any
    rngs: list
    inputs: list[str]
    guarded: bool = False  # a second output flags rows whose drawn mean is outside the family's range
    lock: Any = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def compile(cls, graph: GLMMGraph) -> ForwardSampler:
        """Compiled under the process's compile lock (:data:`.backend.COMPILE_LOCK`)."""
        from .backend import COMPILE_LOCK, import_pytensor

        import_pytensor()  # its generated source kept in one directory
        with COMPILE_LOCK:  # (also keeps the warnings filter below from interleaving with another's)
            return cls._compile(graph)

    @classmethod
    def _compile(cls, graph: GLMMGraph) -> ForwardSampler:
        from pymc.sampling.forward import compile_forward_sampling_function
        from pytensor.tensor.random.type import RandomGeneratorType

        params = graph.free_parameters
        constant = {v: v.get_value() for v in graph.containers.values()}
        outputs = _guarded_response(graph)
        with warnings.catch_warnings():
            # PyTensor's Numba backend has no Wald sampler and says it falls back to object mode
            # (inverse Gaussian): a speed note for PyTensor's developers, not for our users
            warnings.filterwarnings("ignore", message=".*Numba will use object mode.*")
            fn, _ = compile_forward_sampling_function(
                outputs=outputs,
                vars_in_trace=params,
                basic_rvs=graph.model.basic_RVs,
                constant_data=constant,
                freeze_vars=set(params),
                model=graph.model,
            )
        COMPILE_COUNT["sampler"] += 1
        rngs = [s for s in fn.get_shared() if isinstance(s.type, RandomGeneratorType)]
        names = [i.variable.name for i in fn.maker.inputs if not i.shared]
        return cls(fn, rngs, names, guarded=len(outputs) > 1)

    def draw(self, values: dict[str, np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The observed values drawn, and a mask of the rows whose drawn mean is outside the
        family's range (None where the link cannot leave it)."""
        from pymc.pytensorf import reseed_rngs

        with self.lock:
            reseed_rngs(self.rngs, seed)
            out = self.fn(**{k: values[k] for k in self.inputs})
        out = out if isinstance(out, (list, tuple)) else [out]
        return np.asarray(out[0]), (np.asarray(out[1], dtype=bool) if self.guarded else None)


def _guarded_response(graph: GLMMGraph) -> list:
    """[y] to draw; for a link that can put the mean outside the family's range (identity,
    reciprocal, power, custom links on a bounded range: gamma's mu = 1 / eta for eta <= 0),
    [y drawn at a valid mean on those rows, the rows' mask]. PyMC's generators do not agree on
    such means (gamma drew negative responses, the inverse Gaussian raised NumPy's 'mean <= 0');
    the caller makes those rows NaN, as MATLAB's generators give. A scale-free link the family
    allows without a warning (log for counts and positive means; logit, probit, comploglog and
    loglog) keeps [y], so its draws are unchanged; binomial's log link is guarded (PyMC drew every
    trial a success for p > 1)."""
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace

    lo, hi = graph.dist.mean_range
    link = graph.link
    in_range = link.builtin and link.scale_free and link.name not in graph.dist.bad_links
    whole_line = link.builtin and link.power is None  # g^-1 defined for every eta (not a power link)
    if in_range or (np.isinf(lo) and np.isinf(hi) and whole_line):  # (binomial's log link: p > 1)
        return [graph.y]
    eta = graph.eta
    mu = graph.link.inverse_pt(eta)
    invalid = pt.or_(pt.or_(pt.isnan(mu), pt.lt(mu, lo)), pt.gt(mu, hi))
    middle = 1.0 if np.isinf(hi) else 0.5 * (lo + hi)  # a valid mean for the flagged rows
    with np.errstate(all="ignore"):
        eta_valid = float(graph.link.link_np(np.array(middle)))
    y = graph_replace([graph.y], {eta: pt.switch(invalid, eta_valid, eta)}, strict=False)[0]
    return [y, invalid]


# the links that keep every mean of a family inside its range (binomial: not the log link)
_IN_RANGE = {"binomial": "A logit, probit, comploglog or loglog link"}


def _invalid_to_nan(y: np.ndarray, invalid: np.ndarray | None, dist, link) -> np.ndarray:
    """NaN where the drawn mean is outside the family's range, with a warning counting them."""
    if invalid is None or not invalid.any():
        return y
    from .errors import GLMMWarning

    y = np.array(y, dtype=float)
    y[invalid] = np.nan
    lo, hi = dist.mean_range
    n = f"{int(invalid.sum())} of {invalid.size}"
    if np.isfinite([lo, hi]).any():
        what = f"drawn means fell outside the {dist.name} range ({lo:g}, {hi:g}) under the {link.name} link"
        fix = f"{_IN_RANGE.get(dist.name, 'A log link')} keeps every mean in range"
    else:  # a normal model's power link: no mean where eta <= 0
        what = f"drawn linear predictors fell outside the {link.name} link's domain (eta > 0)"
        fix = "The identity or log link is defined for every eta"
    warn(
        f"random: {n} {what}; those responses are NaN (as MATLAB's generators give for invalid "
        f"parameters). {fix}",
        GLMMWarning,
    )
    return y


def _overflow_to_nan(k: np.ndarray) -> np.ndarray:
    """NaN, with a warning, for integer draws that overflowed: a count whose mean is beyond the
    int64 range (or infinite) came back as -2^63 from the generator's cast."""
    if k.dtype.kind not in "iu" or not (bad := k < 0).any():
        return k
    from .errors import GLMMWarning

    out = k.astype(float)
    out[bad] = np.nan
    warn(
        f"random: {int(bad.sum())} of {bad.size} drawn means were too large for a count (beyond "
        "2^63, or infinite); those responses are NaN. Check those rows' predictors and offsets "
        "(a mean that large is far outside the data the model was fitted to)",
        GLMMWarning,
    )
    return out


def simulate_fitted_rows(ws, values: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """A response for the rows used in the fit, on MATLAB's scale (compiles the sampler once)."""
    if ws.sampler is None:
        with ws.lock:
            if ws.sampler is None:
                ws.sampler = ForwardSampler.compile(ws.graph)
    k, invalid = ws.sampler.draw(values, seed)
    k = _overflow_to_nan(k)
    d = ws.design
    return _invalid_to_nan(
        ws.dist.response_from_observed(k, d.weights, d.binomial_size), invalid, ws.dist, ws.link
    )


def simulate_new_rows(
    ws, newdata, values, seed, *, weights=None, binomial_size=None, offset=None
) -> np.ndarray:
    """A response at new rows; samplers are cached per distinct new design (at most 4)."""
    from .design import new_data_design
    from .pymc_model import build_pymc_model

    design = new_data_design(
        ws.design, newdata, weights=weights, binomial_size=binomial_size, offset=offset, dist=ws.dist
    )
    key = _design_key(design)
    with ws.lock:
        sampler = ws.newdata_samplers.get(key)
        if sampler is None:
            sampler = ForwardSampler.compile(build_pymc_model(design, ws.dist, ws.link, ws.layout))
            if len(ws.newdata_samplers) >= 4:
                ws.newdata_samplers.pop(next(iter(ws.newdata_samplers)))
            ws.newdata_samplers[key] = sampler
    k, invalid = sampler.draw(values, seed)
    k = _overflow_to_nan(k)
    y = ws.dist.response_from_observed(k, design.weights, design.binomial_size)
    return _invalid_to_nan(y, invalid, ws.dist, ws.link)


def _design_key(design) -> str:
    """Fingerprint of the arrays a sampler is built from (re-use it for repeated newdata draws)."""
    import hashlib

    h = hashlib.sha1()
    for a in [design.X, design.weights, design.binomial_size, design.offset] + [
        x for t in design.terms for x in (t.T, t.codes)
    ]:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.shape).encode())
    return h.hexdigest()
