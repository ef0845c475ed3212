"""The simulated (parametric-bootstrap) likelihood-ratio test of two nested models.

With L the maximised log-likelihoods, the observed statistic is LR = 2 (L_big - L_small). Each
replicate simulates a response from the smaller model's fit (the null hypothesis), refits both
models to it and records LR* = 2 (L*_big - L*_small). With N replicates whose LR* is finite,

    p_sim = (1 + #{LR* >= LR - 1e-6}) / (N + 1)

(a tie within the fits' precision, 1e-6 in LR, counts as an exceedance), beside the chi-square
p-value P(chi2_df > max(LR, 0)) with df the difference in the numbers of parameters (fixed effects
plus covariance parameters). p_sim is valid where the chi-square reference is not, e.g. for a
variance on the boundary (H0: sigma^2 = 0), where the chi-square p-value is conservative.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import InputError, InputTypeError
from ..fit_methods import METHODS
from ..inference.compare import offset_in_span
from .result import BootstrapResult
from .runner import check_model, make_plan, run_replicates
from .statistics import LRT_NAMES, Task

__all__ = ["LR_TIE_TOL", "SimulatedLRT", "check_nested", "simulated_lrt"]

LR_TIE_TOL = 1e-6
_SPAN_TOL = 1e-7


@dataclass(frozen=True)
class SimulatedLRT:
    """A simulated likelihood-ratio test of ``small`` (null) against ``big``.

    ``LR`` the observed statistic, ``df`` the difference in parameters, ``p_chisq`` the chi-square
    p-value, ``p_sim`` the simulated one over ``n_used`` replicates (``exceed`` of them had
    LR* >= LR), ``replicates`` the run (columns LR, logLik_small, logLik_big; its failures and
    flags)."""

    LR: float
    df: int
    p_chisq: float
    p_sim: float
    exceed: int
    n_used: int
    replicates: BootstrapResult
    small_formula: str
    big_formula: str

    @property
    def nsim(self) -> int:
        return self.replicates.nsim

    @property
    def n_failed(self) -> int:
        return self.replicates.n_failed

    @property
    def n_not_converged(self) -> int:
        return self.replicates.n_not_converged

    @property
    def failures(self) -> pd.DataFrame:
        return self.replicates.failures

    def merge(self, *others: SimulatedLRT) -> SimulatedLRT:
        """One test from runs of the same models and seed over disjoint replicates (a run continued
        with ``start=``): the replicates merged (:meth:`BootstrapResult.merge`) and p_sim over all
        of them."""
        for o in others:
            if not isinstance(o, SimulatedLRT):
                raise InputTypeError(f"merge: expected SimulatedLRT objects, got {type(o).__name__}")
            if (o.LR, o.df, o.small_formula, o.big_formula) != (
                self.LR,
                self.df,
                self.small_formula,
                self.big_formula,
            ):
                raise InputError("merge: the tests are of different models (their LR, df or formulas differ)")
        reps = self.replicates.merge(*(o.replicates for o in others))
        p_sim, exceed, used = simulated_p_value(self.LR, reps.replicates["LR"].to_numpy())
        return replace(self, p_sim=p_sim, exceed=exceed, n_used=used, replicates=reps)

    def to_frame(self) -> pd.DataFrame:
        """One row: LRStat, deltaDF, pValue (chi-square), pSim, NSim, NUsed, NFailed, NNotConverged."""
        return pd.DataFrame(
            {
                "LRStat": [self.LR],
                "deltaDF": [self.df],
                "pValue": [self.p_chisq],
                "pSim": [self.p_sim],
                "NSim": [self.nsim],
                "NUsed": [self.n_used],
                "NFailed": [self.n_failed],
                "NNotConverged": [self.n_not_converged],
            }
        )

    def __str__(self) -> str:
        return (
            "Simulated likelihood-ratio test\n"
            f"  small: {self.small_formula}\n"
            f"  big:   {self.big_formula}\n"
            f"  LR = {self.LR:.4f}, df = {self.df}, chi-square p = {self.p_chisq:.4g}, "
            f"simulated p = {self.p_sim:.4g} ({self.exceed} of {self.n_used} replicates with LR* >= LR; "
            f"{self.n_failed} failed, {self.n_not_converged} not converged)"
        )


def simulated_p_value(lr: float, lr_star: np.ndarray) -> tuple[float, int, int]:
    """(p_sim, exceedances, replicates used) from the observed LR and the replicates' LR*."""
    lr_star = np.asarray(lr_star, dtype=float)
    lr_star = lr_star[np.isfinite(lr_star)]
    exceed = int(np.sum(lr_star >= lr - LR_TIE_TOL))
    return (1 + exceed) / (lr_star.size + 1), exceed, int(lr_star.size)


def _n_parameters(model) -> int:
    return model.num_coefficients + model.num_covariance_parameters


def check_nested(small, big, who: str = "small, big") -> int:
    """Refuse two models that a likelihood-ratio test cannot compare; return the difference in
    their numbers of parameters. Checked, in this order:

    1. both are fitted ``GeneralizedLinearMixedModel`` objects;
    2. the same rows of the data were used (the used-row masks are equal);
    3. the same response (the fits' responses on the used rows), prior weights and binomial
       sizes, exactly;
    4. the same distribution and link;
    5. the same fit method (for quadrature the same ``n_agq``), not pseudo-likelihood (MPL/REMPL
       maximise likelihoods of different pseudo-data); for REML, the same fixed-effects column
       space (restricted likelihoods with different X are not comparable);
    6. big has more parameters (fixed effects + covariance parameters) than small;
    7. every column of small's X is in the column space of big's X (least squares: the residual of
       each column is at most 1e-7 of its norm), and so is the difference of the offsets (equal
       offsets, or small's offset taken by big as a predictor);
    8. every grouping variable of small has a term in big, and the coefficient names of small's
       terms on it are among those of big's terms on it (e.g. ``(1|g)`` within ``(1 + x|g)`` or
       ``(1|g) + (0 + x|g)``).

    ``who`` names the arguments in the messages (``compare`` passes 'nsim').

    Not checked: that the covariance structures nest beyond (8) (``(1 + x|g)`` in
    ``(1|g) + (0 + x|g)`` passes 8 but fails 6 when the fixed effects are the same)."""
    check_model(small, "small")
    check_model(big, "big")
    ds, db = small._ws.design, big._ws.design
    if ds.subset.shape != db.subset.shape or not np.array_equal(ds.subset, db.subset):
        raise InputError(
            f"{who}: the models were fitted to different rows of the data (or to different data); "
            "fit both to the same rows (the same data, exclude and missing values)"
        )
    for label, a, b in (
        ("responses", small._result.y, big._result.y),
        ("prior weights", ds.weights, db.weights),
        ("binomial sizes", ds.binomial_size, db.binomial_size),
    ):
        if not np.array_equal(a, b):
            raise InputError(
                f"{who}: the models were fitted to different {label}; compare models of one response"
            )
    if (small.distribution, small.link) != (big.distribution, big.link):
        raise InputError(
            f"{who}: different distributions or links ({small.distribution}/{small.link} vs "
            f"{big.distribution}/{big.link}); a likelihood-ratio test needs the same family"
        )
    if small.fit_method != big.fit_method:
        raise InputError(
            f"{who}: different fit methods ({small.fit_method} vs {big.fit_method}); refit one of them"
        )
    if small.fit_method == "quadrature" and small._settings.n_agq != big._settings.n_agq:
        raise InputError(
            f"{who}: the models are fitted by quadrature with different numbers of nodes "
            f"(n_agq = {small._settings.n_agq} and {big._settings.n_agq}), whose likelihoods differ by "
            "more than the test measures; refit them with the same n_agq"
        )
    method = METHODS[small.fit_method]
    if method.pseudo:
        raise InputError(
            f"{who}: fit_method '{small.fit_method}' maximises pseudo-likelihoods of different "
            "pseudo-data, which a likelihood-ratio test cannot compare; fit both by 'laplace'"
        )
    k_small, k_big = _n_parameters(small), _n_parameters(big)
    if k_big <= k_small:
        raise InputError(
            f"{who}: big has {k_big} parameters and small {k_small}; big must have more "
            "(pass the smaller model first)"
        )
    if not _in_span(ds.X, db.X):
        raise InputError(
            f"{who}: small's fixed effects are not nested in big's (a column of small's X is not in the "
            "column space of big's X)"
        )
    if not offset_in_span(ds.offset, db.offset, db.X, _SPAN_TOL):
        raise InputError(
            f"{who}: small's offset differs from big's by more than a combination of big's fixed "
            "effects, so the models are not nested; fit both with the same offset (or give big the "
            "offset's variable as a predictor)"
        )
    if method.restricted and not _in_span(db.X, ds.X):
        raise InputError(
            f"{who}: fit_method '{small.fit_method}' is restricted: its likelihoods are comparable "
            "only with the same fixed effects; refit both with fit_method='laplace' to test fixed effects"
        )
    names_small, names_big = _term_names(ds), _term_names(db)
    for group, names in names_small.items():
        if group not in names_big:
            raise InputError(
                f"{who}: small has a random-effects term on '{group}' and big has none; "
                "the models are not nested"
            )
        missing = sorted(names - names_big[group])
        if missing:
            raise InputError(
                f"{who}: small's random effects {missing} on '{group}' are not in big's terms on "
                f"'{group}'; the models are not nested"
            )
    return k_big - k_small


def _in_span(A: np.ndarray, B: np.ndarray) -> bool:
    """Every column of A is in the column space of B (relative least-squares residual <= 1e-7)."""
    if A.shape[1] == 0:
        return True
    if B.shape[1] == 0:
        return not np.any(A)
    coef = np.linalg.lstsq(B, A, rcond=None)[0]
    resid = np.linalg.norm(A - B @ coef, axis=0)
    scale = np.maximum(np.linalg.norm(A, axis=0), np.finfo(float).tiny)
    return bool(np.all(resid <= _SPAN_TOL * scale))


def _term_names(design) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for t in design.terms:
        out[t.group] |= set(t.names)
    return dict(out)


def simulated_lrt(
    small,
    big,
    nsim: int,
    *,
    rng=None,
    n_jobs: int = 1,
    backend: str | None = None,
    client=None,
    batch_size: int | None = None,
    progress: bool = True,
    start: int = 0,
) -> SimulatedLRT:
    """Simulated likelihood-ratio test of the nested models ``small`` (the null) and ``big``.

    Simulates ``nsim`` responses from ``small``'s fit, refits both models to each and reports
    p_sim = (1 + #{LR* >= LR}) / (N + 1) over the N replicates that did not fail, beside the
    chi-square p-value (formulas and tie rule in the module docstring). The models are checked by
    :func:`check_nested` before any work. ``rng``, ``n_jobs``, ``backend``, ``client``,
    ``batch_size``, ``progress`` and ``start`` are those of :func:`parametric_bootstrap`: the same
    seed gives the same replicates on every backend. Failed replicates are left out of p_sim and
    reported (``result.failures``, and a warning); replicates whose refits did not converge are
    kept and counted (``n_not_converged``).
    """
    from ..inference.distributions import chi2_sf

    plan = make_plan(
        nsim,
        rng=rng,
        n_jobs=n_jobs,
        backend=backend,
        client=client,
        batch_size=batch_size,
        progress=progress,
        start=start,
    )
    df = check_nested(small, big)
    ls, lb = small.log_likelihood, big.log_likelihood
    lr = 2.0 * (lb - ls)
    task = Task("lrt", LRT_NAMES, plan.entropy, plan.spawn_key)
    rows = run_replicates((small, big), task, plan)
    info = {"small": small.formula, "big": big.formula, "LR": lr, "df": df}
    result = BootstrapResult._from_rows(rows, LRT_NAMES, [lr, ls, lb], plan, kind="lrt", info=info)
    result.warn_problems()
    p_sim, exceed, used = simulated_p_value(lr, result.replicates["LR"].to_numpy())
    p_chisq = float(chi2_sf(max(lr, 0.0), df))
    return SimulatedLRT(lr, df, p_chisq, p_sim, exceed, used, result, small.formula, big.formula)
