"""Names of parameters, dimensions and coordinates, shared by the PyMC models and every ArviZ output.

One naming serves the ML model, the Bayesian model, ``to_inference_data`` and ``compare_fits``, so
that ArviZ treats an ML fit and a posterior alike. For the random-effects term with label ``L`` (its
grouping variable, e.g. ``factory`` or ``LOCATION:BROOD``; ``Subject_2`` for the second term on a
grouping variable that labels two terms):

==================  ==========================  =================================================
variable            dims                        meaning
==================  ==========================  =================================================
``beta``            ``coef``                    fixed effects, MATLAB coefficient names
``sd_L``            ``L_coef``                  random-effect SDs (covariance_parameters "std")
``corr_L``          ``L_pair``                  correlations, pairs "Name1, Name2" with Name1
                                                below Name2 in column-major order ("corr")
``b_L``             ``L_level, L_coef``         random effects (MATLAB's b, per level)
``u_L``             ``L_level, L_coef``         spherical / non-centred random effects
``sigma``           ()                          sqrt(Dispersion): normal, gamma, inverse Gaussian
``nb_theta``        ()                          negative binomial's theta (Var = mu + mu^2/theta)
response name       ``obs``                     the observed variable (counts for binomial)
==================  ==========================  =================================================
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .families import DISTRIBUTIONS

__all__ = ["DISPERSION", "ModelNames", "TermNames", "safe_name"]

DISPERSION = "sigma"
OBS_DIM = "obs"


def safe_name(text: str) -> str:
    """A variable name from a column or coefficient name: characters netCDF or ArviZ labels would
    trip over ('/', spaces, brackets, ...) become '_'."""
    return re.sub(r"[^0-9A-Za-z_:.\-]", "_", text)


@dataclass(frozen=True)
class TermNames:
    """Names for one random-effects term."""

    label: str
    group: str
    names: tuple[str, ...]  # coefficient names within the block
    levels: tuple[str, ...]

    @property
    def q(self) -> int:
        return len(self.names)

    @property
    def sd(self) -> str:
        return f"sd_{self.label}"

    @property
    def corr(self) -> str:
        return f"corr_{self.label}"

    @property
    def b(self) -> str:
        return f"b_{self.label}"

    @property
    def u(self) -> str:
        return f"u_{self.label}"

    @property
    def level_dim(self) -> str:
        return f"{self.label}_level"

    @property
    def coef_dim(self) -> str:
        return f"{self.label}_coef"

    @property
    def pair_dim(self) -> str:
        return f"{self.label}_pair"

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(i, j), i > j: the correlations of the block in column-major lower-triangle order."""
        return [(i, j) for j in range(self.q) for i in range(j + 1, self.q)]

    @property
    def pair_labels(self) -> list[str]:
        return [f"{self.names[i]}, {self.names[j]}" for i, j in self.pairs]

    def pair_index(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array([i for i, _ in self.pairs], dtype=int)
        cols = np.array([j for _, j in self.pairs], dtype=int)
        return rows, cols


@dataclass(frozen=True)
class ModelNames:
    """All names of one model: fixed-effect coefficients, random terms, the observed variable."""

    coef: tuple[str, ...]
    terms: tuple[TermNames, ...]
    response: str  # name of the observed variable
    ancillary: str | None  # the family's ancillary variable: "sigma", "nb_theta", or None
    n_obs: int
    obs_index: tuple[int, ...]  # input-row position of each used row

    @property
    def has_dispersion(self) -> bool:
        """The ancillary variable is MATLAB's sqrt(Dispersion) sigma (normal, gamma, inverse Gaussian)."""
        return self.ancillary == DISPERSION

    @classmethod
    def from_design(cls, design, family) -> ModelNames:
        """Names of ``design``'s model; ``family`` is its :class:`~ppl_glmm.families.Distribution` (or
        a bool: True for a family whose ancillary parameter is the dispersion sigma)."""
        if isinstance(family, bool):
            ancillary = DISPERSION if family else None
        else:
            ancillary = family.ancillary.name if family.ancillary is not None else None
        groups = Counter(t.group for t in design.terms)
        seen: Counter = Counter()
        terms = []
        for t in design.terms:
            seen[t.group] += 1
            group = safe_name(t.group)
            label = group if groups[t.group] == 1 or seen[t.group] == 1 else f"{group}_{seen[t.group]}"
            terms.append(TermNames(label, t.group, tuple(t.names), tuple(t.levels)))
        ancillaries = {d.ancillary.name for d in DISTRIBUTIONS.values() if d.ancillary is not None}
        reserved = {"beta", *ancillaries, "X", "weights", "offset", "trials", "y_observed", "coef", OBS_DIM}
        for tn in terms:
            reserved |= {tn.sd, tn.corr, tn.b, tn.u, f"T_{tn.label}", f"codes_{tn.label}", f"chol_{tn.label}"}
            reserved |= {tn.level_dim, tn.coef_dim, tn.pair_dim}
        resp = design.formula.response
        response = resp if resp.isidentifier() and resp not in reserved else "y"
        return cls(
            coef=tuple(design.fixed.names),
            terms=tuple(terms),
            response=response,
            ancillary=ancillary,
            n_obs=design.n,
            obs_index=tuple(int(i) for i in np.flatnonzero(design.subset)),
        )

    def coords(self) -> dict[str, list]:
        out: dict[str, list] = {"coef": list(self.coef), OBS_DIM: list(self.obs_index)}
        for t in self.terms:
            out[t.level_dim] = list(t.levels)
            out[t.coef_dim] = list(t.names)
            if t.q > 1:
                out[t.pair_dim] = t.pair_labels
        return out

    def covariance_vars(self) -> list[str]:
        """The covariance-parameter variables: sd (and corr) per term, then sigma or nb_theta."""
        out = []
        for t in self.terms:
            out.append(t.sd)
            if t.q > 1:
                out.append(t.corr)
        if self.ancillary is not None:
            out.append(self.ancillary)
        return out

    def parameter_vars(self) -> list[str]:
        """beta and the covariance parameters: what an ML fit and a posterior both report."""
        return ["beta", *self.covariance_vars()]

    def summary_vars(self) -> list[str]:
        """What a posterior summary and its diagnostics cover: the parameters and the random effects."""
        return [*self.parameter_vars(), *(t.b for t in self.terms)]
