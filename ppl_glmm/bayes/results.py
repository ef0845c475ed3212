"""``BayesianGLMM``: a NUTS fit of a model's Bayesian PyMC model, with ArviZ output and summaries.

It holds the design, the resolved priors and the posterior DataTree; the PyMC model is rebuilt on
demand (after unpickling, for instance), so a fit pickles and deep-copies. Nothing on the object
changes after construction: ``sample_posterior_predictive`` returns a new fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from ..display import format_table
from ..keywords import check_method_keywords
from ..names import ModelNames
from .model import BayesGraph, build_bayes_model
from .priors import PriorSet
from .sampling import SamplerSettings
from .summary import diagnostics_table, summarize

__all__ = ["BayesianGLMM", "ModelSpec"]

_INDENT = "    "


@dataclass(frozen=True)
class ModelSpec:
    """What the Bayesian model is built from (picklable)."""

    design: Any
    dist: Any
    link: Any
    names: ModelNames
    priors: PriorSet
    formula: str
    centered: tuple[bool, ...]  # per term: b sampled directly (centred) or through u (non-centred)


@check_method_keywords
class BayesianGLMM:
    """A GLMM fitted by NUTS. Create with ``ppl_glmm.fitglme_bayes`` or ``glme.fit_bayes``."""

    def __init__(
        self,
        spec: ModelSpec,
        idata,
        settings: SamplerSettings,
        seconds: float,
        warnings: tuple[str, ...] = (),
        graph: BayesGraph | None = None,
        summary: pd.DataFrame | None = None,
        diagnostics: pd.DataFrame | None = None,
    ):
        self._spec = spec
        self._idata = idata
        self._settings = settings
        self._seconds = float(seconds)
        self._warnings = tuple(warnings)
        self._graph = graph
        if summary is not None:  # computed by the fit already: prime the caches
            self.__dict__["_summary"] = summary
        if diagnostics is not None:
            self.__dict__["_diagnostics"] = diagnostics

    # ---- pickling: the PyMC model is rebuilt on demand -------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_graph"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @property
    def graph(self) -> BayesGraph:
        """The Bayesian PyMC model (built lazily; identical to the one sampled)."""
        if self._graph is None:
            s = self._spec
            self._graph = build_bayes_model(s.design, s.dist, s.link, s.names, s.priors, s.centered)
        return self._graph

    @property
    def model(self):
        """The ``pm.Model`` that was sampled."""
        return self.graph.model

    # ---- basic properties ---------------------------------------------------------------
    @property
    def idata(self):
        """ArviZ DataTree: posterior, sample_stats, log_likelihood, observed_data, constant_data
        (and posterior_predictive after :meth:`sample_posterior_predictive`)."""
        return self._idata

    @property
    def formula(self) -> str:
        return self._spec.formula

    @property
    def distribution(self) -> str:
        return self._spec.dist.name

    @property
    def link(self) -> str:
        return self._spec.link.name

    @property
    def num_observations(self) -> int:
        return self._spec.design.n

    @property
    def coefficient_names(self) -> list[str]:
        return list(self._spec.names.coef)

    @property
    def names(self) -> ModelNames:
        return self._spec.names

    @property
    def settings(self) -> SamplerSettings:
        return self._settings

    @property
    def sampling_time(self) -> float:
        """Wall-clock seconds of sampling (tuning and draws; model compilation included)."""
        return self._seconds

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    @property
    def priors(self) -> pd.DataFrame:
        """Parameter, Prior, Source ('default' or 'user') for every parameter."""
        return self._spec.priors.table(self._spec.names)

    # ---- summaries -------------------------------------------------------------------------
    @cached_property
    def _summary(self) -> pd.DataFrame:
        return summarize(self._idata, self._spec.names.summary_vars())

    def _table(self, var_names: list[str], ci_prob: float) -> pd.DataFrame:
        if ci_prob == 0.95:
            s = self._summary
            return s[s["Variable"].isin(var_names)].reset_index(drop=True)
        return summarize(self._idata, var_names, ci_prob)

    @property
    def coefficients(self) -> pd.DataFrame:
        """Name, Mean, SD, Lower, Upper (95% equal-tailed), Rhat, ESS_bulk, ESS_tail, MCSE."""
        return self.fixed_effects()

    def fixed_effects(self, ci_prob: float = 0.95) -> pd.DataFrame:
        _check_prob(ci_prob)
        t = self._table(["beta"], ci_prob)
        out = t[["Mean", "SD", "Lower", "Upper", "Rhat", "ESS_bulk", "ESS_tail", "MCSE"]].copy()
        out.insert(0, "Name", t["Label"].to_numpy())
        return out.reset_index(drop=True)

    def covariance_parameters(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Group, Name1, Name2, Type (std/corr; theta for negative binomial's theta), Mean, Median, SD,
        Lower, Upper, Rhat, ESS_bulk: posterior summaries named as the ML fit's covariance_parameters()
        (the Error group: sqrt(Dispersion), or theta)."""
        _check_prob(ci_prob)
        names = self._spec.names
        t = self._table(names.covariance_vars(), ci_prob).set_index("Parameter")
        rows = []
        for tn in names.terms:
            for j in range(tn.q):
                for i in range(j, tn.q):
                    if i == j:
                        key, typ = f"{tn.sd}[{tn.names[i]}]", "std"
                    else:
                        key, typ = f"{tn.corr}[{tn.names[i]}, {tn.names[j]}]", "corr"
                    rows.append((tn.group, tn.names[i], tn.names[j], typ, key))
        if names.has_dispersion:
            rows.append(("Error", "sqrt(Dispersion)", "", "std", names.ancillary))
        elif names.ancillary is not None:
            rows.append(("Error", self._spec.dist.ancillary.label, "", "theta", names.ancillary))
        cols = ["Mean", "Median", "SD", "Lower", "Upper", "Rhat", "ESS_bulk"]
        out = pd.DataFrame(
            [(g, n1, n2, ty, *t.loc[key, cols].to_numpy()) for g, n1, n2, ty, key in rows],
            columns=["Group", "Name1", "Name2", "Type", *cols],
        )
        return out

    def random_effects(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Group, Level, Name, Mean, SD, Lower, Upper, Rhat, ESS_bulk for every random effect b."""
        _check_prob(ci_prob)
        frames = []
        for tn in self._spec.names.terms:
            t = self._table([tn.b], ci_prob)
            level, name = zip(*(_level_and_name(label, tn.names) for label in t["Label"]))
            frames.append(
                pd.DataFrame(
                    {
                        "Group": tn.group,
                        "Level": list(level),
                        "Name": list(name),
                        **{c: t[c].to_numpy() for c in ["Mean", "SD", "Lower", "Upper", "Rhat", "ESS_bulk"]},
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    @cached_property
    def _diagnostics(self) -> pd.DataFrame:
        return diagnostics_table(self._idata, self._summary)

    def diagnostics(self) -> pd.DataFrame:
        """Check, Value, Threshold, OK, Message: divergences, R-hat, ESS, E-BFMI, tree depth."""
        return self._diagnostics.copy()

    # ---- predictive ------------------------------------------------------------------------
    def sample_posterior_predictive(self, rng=None, progress: bool | None = None) -> BayesianGLMM:
        """A new fit whose ``idata`` also holds posterior_predictive: one response per posterior
        draw, by PyMC's ``sample_posterior_predictive`` on the same model (observed scale: counts for
        binomial). This fit is not changed."""
        import pymc as pm

        from ..simulate import seed_from

        seed = seed_from(rng)
        show = self._settings.progress if progress is None else bool(progress)
        idata = self._idata.copy()
        pp = pm.sample_posterior_predictive(
            idata, model=self.model, var_names=[self._spec.names.response], random_seed=seed, progressbar=show
        )
        idata["posterior_predictive"] = pp["posterior_predictive"]
        return BayesianGLMM(
            self._spec,
            idata,
            self._settings,
            self._seconds,
            self._warnings,
            self._graph,
            summary=self._summary,
            diagnostics=self._diagnostics,
        )

    # ---- display ---------------------------------------------------------------------------
    def __str__(self) -> str:
        s, st = self._spec, self._settings
        names = s.names
        out = [f"Generalized linear mixed-effects model fit by NUTS ({st.sampler})", "", "Model information:"]
        n_cov = sum(t.q * (t.q + 1) // 2 for t in names.terms) + int(names.ancillary is not None)
        for label, value in [
            ("Number of observations", s.design.n),
            ("Fixed effects coefficients", len(names.coef)),
            ("Random effects coefficients", s.design.q),
            ("Covariance parameters", n_cov),
        ]:
            out.append(f"{_INDENT}{label:<32}{value:>6d}")
        for label, value in [("Distribution", s.dist.display), ("Link", s.link.display)]:
            out.append(f"{_INDENT}{label:<32}{value:<6}")
        out += ["", "Formula:", _INDENT + s.formula, "", "Sampling:"]
        out.append(
            f"{_INDENT}{st.chains} chains x {st.draws} draws after {st.tune} tuning steps, init '{st.init}', "
            f"target_accept {st.target_accept:g}; {self._seconds:.3g} s"
        )
        out.append(f"{_INDENT}random effects: {_centring(s)}")
        diag = self._diagnostics.set_index("Check")
        out.append(
            f"{_INDENT}divergences {int(diag.loc['divergences', 'Value'])}, max R-hat "
            f"{diag.loc['max R-hat', 'Value']:.4g}, min ESS bulk {diag.loc['min ESS (bulk)', 'Value']:.0f}, "
            f"min ESS tail {diag.loc['min ESS (tail)', 'Value']:.0f}"
        )
        out += ["", "Fixed effects coefficients (posterior mean, sd, 95% equal-tailed intervals):"]
        out += format_table(self.coefficients)
        out += ["", "Random effects covariance parameters (posterior):"]
        cov = self.covariance_parameters()
        cols = ["Name1", "Name2", "Type", "Mean", "Median", "SD", "Lower", "Upper", "Rhat", "ESS_bulk"]
        start = 0
        for tn in names.terms:  # the rows come term by term, q (q + 1) / 2 each
            stop = start + tn.q * (tn.q + 1) // 2
            out.append(f"Group: {tn.group} ({len(tn.levels)} Levels)")
            out += format_table(cov.iloc[start:stop][cols])
            out.append("")
            start = stop
        out.append("Group: Error")
        if not names.has_dispersion:
            out += format_table(pd.DataFrame({"Name": ["sqrt(Dispersion)"], "Estimate": [1.0]}))
        if names.ancillary is not None:  # sigma, or negative binomial's theta
            out += format_table(
                cov[cov["Group"] == "Error"][["Name1", *cols[3:]]].rename(columns={"Name1": "Name"})
            )
        if self._warnings:
            out += [""] + [f"Warning: {w}" for w in self._warnings]
        return "\n".join(out) + "\n"

    def __repr__(self) -> str:
        st = self._settings
        return (
            f"<BayesianGLMM {self.distribution}/{self.link} NUTS ({st.sampler}, {st.chains}x{st.draws}): "
            f"{self.formula}>"
        )


def _check_prob(p) -> None:
    from ..errors import InputError

    if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p < 1):
        raise InputError(f"ci_prob: must be a number in (0, 1), got {p!r}")


def _centring(spec: ModelSpec) -> str:
    """'centred', 'non-centred', or per term when they differ: 'centred (g), non-centred (h)'."""
    if all(spec.centered):
        return "centred"
    if not any(spec.centered):
        return "non-centred"
    labels = [t.label for t in spec.names.terms]
    c = ", ".join(lab for lab, on in zip(labels, spec.centered) if on)
    nc = ", ".join(lab for lab, on in zip(labels, spec.centered) if not on)
    return f"centred ({c}), non-centred ({nc})"


def _level_and_name(label: str, names) -> tuple[str, str]:
    """ArviZ's label 'level, name' of a random effect split at the coefficient name (a level may
    hold ', ' itself: 'Smith, G00, (Intercept)')."""
    for name in sorted(names, key=len, reverse=True):
        if label.endswith(", " + name):
            return label[: -len(name) - 2], name
    level, _, name = label.rpartition(", ")  # pragma: no cover - every label ends with a name
    return level, name
