"""Print how far ppl_glmm's fits are from the R references, case by case.

Run from the repository root::

    python tests/reference/compare_engine.py [case ...]

For every case of ``reference_cases.CASES`` and ``HARD_CASES`` (or the named ones) it fits the
model and prints, against the case's authoritative reference: the log-likelihood difference, the
largest relative difference of the fixed effects, of the variance components (SDs, correlations,
residual SD), of the conditional SEs and of the conditional modes, whether the fit converged, and
the warnings or the exception raised. Used to set and to check the tolerances of
test_reference_lme4.py and test_hard_numerics.py.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))

from reference_cases import CASES, HARD_CASES, case_spec, fit_case, ranef_blocks, reference


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b))) if a.size else 0.0


def _ranef_rel(m, R) -> float:
    """Largest |b - b_ref| / max|b_ref| over the terms (as test_conditional_modes_match_ranef)."""
    worst = 0.0
    for _, _, got, expected in ranef_blocks(m, R):
        e = np.array([expected[lv] for lv in got])
        g = np.array(list(got.values()))
        worst = max(worst, float(np.max(np.abs(g - e)) / np.max(np.abs(e))))
    return worst


def compare(name: str) -> dict:
    source = case_spec(name)[3]
    R = reference()[name][source]
    out: dict = {"case": name, "ref": source}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m = fit_case(name)
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            return out
    out["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:80]}" for w in caught})
    out["converged"] = m.converged
    out["dll"] = m.log_likelihood - R["logLik"]
    out["fixef"] = _rel(m.coefficients["Estimate"], R["fixef"])
    _, _, stats = m.covariance_parameters()
    est = [row["Estimate"] for t in stats[:-1] for row in t.to_dict("records")]
    if len(est) == len(R["varcorr"]):
        out["varcomp"] = _rel(est, [v["estimate"] for v in R["varcorr"]])
    else:
        out["varcomp"] = f"{len(est)} estimates, reference has {len(R['varcorr'])}"
    out["sigma"] = _rel(np.sqrt(m.dispersion), R["sigma"])
    if "se_conditional" in R:
        out["se"] = _rel(m.coefficients["SE"], R["se_conditional"])
    if "ranef" in R:
        try:
            out["ranef"] = _ranef_rel(m, R)
        except (KeyError, ValueError) as exc:
            out["ranef"] = f"{type(exc).__name__}: {exc}"
    out["names_ok"] = m.coefficient_names == reference()[name]["names_python"]
    return out


def main(names: list[str]) -> None:
    for name in names or [*CASES, *HARD_CASES]:
        r = compare(name)
        if "error" in r:
            print(f"{name:36s} [{r['ref']}] ERROR {r['error'][:150]}")
            continue
        fmt = {k: (f"{v:.2e}" if isinstance(v, float) else v) for k, v in r.items()}
        print(
            f"{name:36s} [{r['ref']}] dlogLik={fmt['dll']} fixef={fmt['fixef']} varcomp={fmt['varcomp']}"
            f" sigma={fmt['sigma']} se={fmt.get('se', '-')} ranef={fmt.get('ranef', '-')}"
            f" converged={r['converged']} names_ok={r['names_ok']}"
        )
        for w in r["warnings"]:
            print(f"{'':38s}{w}")


if __name__ == "__main__":
    main(sys.argv[1:])
