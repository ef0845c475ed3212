"""Simulation from a fitted model through PyMC's forward sampling (MATLAB ``random``).

New spherical random effects u ~ N(0, I) are drawn from their prior (so b ~ N(0, Psi-hat)) and a
new response from the conditional distribution given them, with beta, theta and sigma fixed at the
ML estimates. The sampler is compiled once per workspace with
``pymc.sampling.forward.compile_forward_sampling_function`` (u and y are volatile, the parameters
are inputs) and reseeded per call, so the same seed gives the same draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .pymc_model import COMPILE_COUNT, GLMMGraph

__all__ = ["ForwardSampler", "seed_from"]


def seed_from(rng) -> int | None:
    """An integer seed from None, an int or a numpy Generator."""
    if rng is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError("rng: a seed must be a non-negative integer")
        return int(rng)
    raise ValueError(
        f"rng: expected None, a non-negative integer seed or a numpy Generator, got {type(rng).__name__}"
    )


@dataclass
class ForwardSampler:
    fn: Any
    rngs: list
    inputs: list[str]

    @classmethod
    def compile(cls, graph: GLMMGraph) -> ForwardSampler:
        from pymc.sampling.forward import compile_forward_sampling_function
        from pytensor.tensor.random.type import RandomGeneratorType

        params = graph.free_parameters
        constant = {v: v.get_value() for v in graph.containers.values()}
        fn, _ = compile_forward_sampling_function(
            outputs=[graph.y],
            vars_in_trace=params,
            basic_rvs=graph.model.basic_RVs,
            constant_data=constant,
            freeze_vars=set(params),
            model=graph.model,
        )
        COMPILE_COUNT["sampler"] += 1
        rngs = [s for s in fn.get_shared() if isinstance(s.type, RandomGeneratorType)]
        names = [i.variable.name for i in fn.maker.inputs if not i.shared]
        return cls(fn, rngs, names)

    def draw(self, values: dict[str, np.ndarray], seed: int) -> np.ndarray:
        from pymc.pytensorf import reseed_rngs

        reseed_rngs(self.rngs, seed)
        out = self.fn(**{k: values[k] for k in self.inputs})
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)
