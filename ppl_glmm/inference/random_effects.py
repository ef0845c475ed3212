"""Random-effects tables (MATLAB ``randomEffects``) and lme4's conditional variances (``condVar``).

* Estimate: the conditional modes b-hat (for MPL/REMPL the BLUPs of the final pseudo-data LME),
  in MATLAB's b order: terms in formula order, level-major within a term.
* SEPred = sqrt(diag Cov(b-hat - b)) with Cov(b-hat - b) = L (H^-1 + G S^-1 G') L', the b block of
  MATLAB's sigma^2 V (:mod:`.joint`): it includes the uncertainty of beta-hat, not of theta-hat.
  tStat = Estimate / SEPred, DF = N - p ('residual') or inf ('none'), pValue = 2 P(T_DF > |t|),
  Lower/Upper = Estimate -/+ t_{1-alpha/2, DF} SEPred.
* ``condVar`` (lme4): Cov(b | y, beta-hat, theta-hat) = L H^-1 L', per level a q_r x q_r block;
  its diagonal is SEPred^2 minus the beta term diag(L G S^-1 G' L'), so lme4's ``condsd`` is
  never larger than SEPred.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..results import FitRecord
from .joint import JointCovariance
from .tables import t_columns

__all__ = ["random_effects_interval", "random_effects_table", "re_names"]


def _name_columns(fit: FitRecord) -> dict[str, np.ndarray]:
    """Group, Level, Name for each entry of b, level-major within each term."""
    groups, levels, names = [], [], []
    for term in fit.design.terms:
        size = term.n_levels * term.q_r
        groups.append(np.full(size, term.group, dtype=object))
        levels.append(np.repeat(np.asarray(term.levels, dtype=object), term.q_r))
        names.append(np.tile(np.asarray(term.names, dtype=object), term.n_levels))
    cat = (lambda parts: np.concatenate(parts)) if groups else (lambda parts: np.zeros(0, dtype=object))
    return {"Group": cat(groups), "Level": cat(levels), "Name": cat(names)}


def re_names(fit: FitRecord) -> pd.DataFrame:
    """Group, Level, Name for each entry of b (MATLAB's ``BNames``)."""
    return pd.DataFrame(_name_columns(fit))


def random_effects_table(fit: FitRecord, joint: JointCovariance, df: float, alpha: float) -> pd.DataFrame:
    """Group, Level, Name, Estimate, SEPred, tStat, DF, pValue, Lower, Upper (module docstring)."""
    se = np.sqrt(np.maximum(joint.b_variance(), 0.0))
    return pd.DataFrame({**_name_columns(fit), **t_columns(fit.result.b, se, df, alpha, se_name="SEPred")})


def random_effects_interval(fit: FitRecord, joint: JointCovariance, df: float, alpha: float) -> np.ndarray:
    """q x 2 [Lower, Upper] of the random effects (MATLAB ``coefCI``'s reCI)."""
    t = random_effects_table(fit, joint, df, alpha)
    return t[["Lower", "Upper"]].to_numpy()
