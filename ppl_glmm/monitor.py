"""What a fit reports besides its estimates: progress per iteration (``verbose``) and the Hessian
check at the optimum (``check_hessian``), MATLAB's ``Verbose`` and ``CheckHessian`` options.

Neither changes a fit: the progress lines are printed from values the optimiser has computed
anyway, and the Hessian is computed after the fit's record is made, on the fit's own problem.

Progress (printed to stdout). The objective is the one the outer optimiser minimises: the negative
log-likelihood ``-logLik`` (Laplace, ApproximateLaplace, quadrature; for a pseudo-likelihood fit,
that of the pseudo-data LME) or the negative restricted log-likelihood (REML, REMPL). With
``verbose=1`` a line per BFGS iteration (``bfgs``: the iteration, the objective, max|gradient| in
the parameters' own units, max|step|) and per Newton step after BFGS (``newton``), then a summary
line; a pseudo-likelihood fit prints a line per PL iteration (``pl``: the iteration, the LME's
objective, max|delta eta|, the LME's BFGS iterations). ``verbose=2`` adds the evaluations of each
iteration with the inner (PIRLS/Newton) iterations of each evaluation, and, for pseudo-likelihood,
the BFGS lines of each PL iteration's LME fit.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .engine.optimize import IterationRecord, OptimizationSummary, hessian_in_basis
from .errors import ConvergenceWarning, warn

if TYPE_CHECKING:
    from .engine.laplace import LaplaceProblem
    from .fitting import Workspace
    from .results import FitResult

__all__ = ["HESSIAN_RTOL", "IterationPrinter", "check_hessian", "parameter_names", "pl_line"]

HESSIAN_RTOL = 1e-6  # smallest eigenvalue of the unit-diagonal Hessian at or below which it is not PD


def _write(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class IterationPrinter:
    """The outer optimiser's ``callback``: prints one line per :class:`IterationRecord`."""

    def __init__(self, title: str, n_parameters: int, level: int, *, restricted: bool, indent: str = ""):
        self.level = level
        self.indent = indent
        objective = "-REML logLik" if restricted else "-logLik"
        _write(f"{indent}{title}: BFGS on {objective} over {n_parameters} parameter(s)")
        head = f"{'':8}{'iter':>5}  {objective:>20}  {'max|grad|':>10}  {'max|step|':>10}"
        if level >= 2:
            head += "  evals  inner iterations"
        _write(indent + head)

    def __call__(self, rec: IterationRecord) -> None:
        line = (
            f"{rec.stage:>8}{rec.iteration:>5d}  {rec.objective:>20.12g}  "
            f"{rec.max_gradient:>10.3e}  {rec.max_step:>10.3e}"
        )
        if self.level >= 2:
            line += f"  {len(rec.inner_iterations):>5d}  {' '.join(map(str, rec.inner_iterations))}"
        _write(self.indent + line)

    def finish(self, summary: OptimizationSummary) -> None:
        state = "converged" if summary.converged else "NOT converged"
        _write(
            f"{self.indent}{state}: objective {summary.objective:.12g}, {summary.n_iterations} BFGS "
            f"iteration(s), {summary.newton_steps} Newton step(s), {summary.n_evaluations} evaluations, "
            f"Newton decrement {summary.newton_decrement:.3g}, max|grad| {summary.max_gradient:.3g}"
        )


def progress(settings, title: str, problem: LaplaceProblem, *, restricted: bool) -> IterationPrinter | None:
    """The printer for ``settings.verbose`` (None when 0)."""
    if not settings.verbose:
        return None
    n = problem.n_cov + int(problem.has_phi) + (0 if problem.inner_beta else problem.p)
    return IterationPrinter(title, n, settings.verbose, restricted=restricted)


def lme_progress(
    settings, iteration: int, lme: LaplaceProblem, *, restricted: bool
) -> IterationPrinter | None:
    """With ``verbose=2``, the printer of one PL iteration's LME fit (indented); else None."""
    if settings.verbose < 2:
        return None
    n = lme.n_cov + int(lme.has_phi)
    return IterationPrinter(f"PL iteration {iteration}, LME", n, 2, restricted=restricted, indent="    ")


def pl_header(title: str, restricted: bool) -> None:
    objective = "LME -REML logLik" if restricted else "LME -logLik"
    _write(f"{title}: pseudo-likelihood iterations (a linear mixed model of pseudo-data per iteration)")
    _write(f"{'':8}{'iter':>5}  {objective:>20}  {'max|d eta|':>10}  {'LME BFGS iterations':>20}")


def pl_line(iteration: int, objective: float, delta: float, lme_iterations: int) -> None:
    _write(f"{'pl':>8}{iteration:>5d}  {objective:>20.12g}  {delta:>10.3e}  {lme_iterations:>20d}")


def parameter_names(ws: Workspace, problem: LaplaceProblem) -> list[str]:
    """Names of the outer optimiser's parameters: the fixed effects (unless beta is in the inner
    step), each relative Cholesky entry ``Lambda[group: row, col]`` (under a covariance pattern,
    the pattern's parameter of entry (row, col) of Psi: ``psi[group: row, col]``), then log sigma
    or log theta."""
    names = [] if problem.inner_beta else list(ws.design.fixed.names)
    if problem.pattern is None:
        entries = [("Lambda", r, i, j) for r, i, j in ws.layout.entries]
    else:
        entries = [("psi", r, i, j) for r, t in enumerate(ws.patterns.terms) for i, j in t.rows]
    for label, r, i, j in entries:
        t = ws.design.terms[r]
        names.append(f"{label}[{t.group}: {t.names[i]}, {t.names[j]}]")
    if problem.has_phi:
        anc = ws.dist.ancillary
        names.append("log sigma" if problem.phi_scales_re or anc is None else f"log {anc.label}")
    return names


def check_hessian(
    ws: Workspace, problem: LaplaceProblem, result: FitResult, *, what: str = "objective"
) -> FitResult:
    """MATLAB's ``CheckHessian``: the finite-difference Hessian of the objective at ``result.x``
    (:func:`~ppl_glmm.engine.optimize.hessian_in_basis`: H~, in coordinates where X's columns are
    orthogonal with rms 1). It counts as positive definite when every diagonal entry is positive and
    the smallest eigenvalue of ``S^-1/2 H~ S^-1/2`` (S = diag(H~): a matrix with unit diagonal, free
    of the parameters' units) is above ``HESSIAN_RTOL``. If it is not, a ConvergenceWarning names
    the smallest eigenvalue of H~ and the parameters along its eigenvector,
    and the message is added to the returned record's ``warnings``."""
    x = result.x
    if x.size == 0:
        return result
    # in coordinates where X's columns are centred and scaled (engine.optimize.hessian_in_basis:
    # H~ = D' H D is positive definite exactly when H is), so that a covariate such as x + 1e6 does
    # not make the test's scaled smallest eigenvalue vanish by its correlation with the intercept
    H, basis = hessian_in_basis(problem, x)
    d = np.diag(H).copy()
    finite = bool(np.all(np.isfinite(H)))
    smallest = float(np.linalg.eigvalsh(H)[0]) if finite else np.nan
    if finite and np.all(d > 0):
        s = 1.0 / np.sqrt(d)
        w, V = np.linalg.eigh(H * s[:, None] * s[None, :])
        if w[0] > HESSIAN_RTOL:
            return result
        v, scaled = V[:, 0] * s, f" ({w[0]:.3g} with H scaled to unit diagonal)"
    else:
        v, scaled = np.linalg.eigh(np.nan_to_num(H))[1][:, 0], ""
    names = parameter_names(ws, problem)
    v = basis @ v  # (the direction in the parameters themselves)
    v = v / np.max(np.abs(v))
    along = ", ".join(f"{names[k]} ({v[k]:+.2f})" for k in np.flatnonzero(np.abs(v) >= 0.1))
    message = (
        f"the Hessian of the {what} at the optimum is not positive definite: smallest eigenvalue "
        f"{smallest:.3g}{scaled}, along {along}. These parameters are not identified (e.g. the same "
        "grouping in two random-effects terms) or the optimum is a saddle point"
    )
    warn(message, ConvergenceWarning)
    return replace(result, warnings=(*result.warnings, message))
