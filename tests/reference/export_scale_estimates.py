"""Write ppl_glmm's estimates of the scale cases for lme4's deviance-function check.

Run from the repository root:
    .venv/bin/python tests/reference/export_scale_estimates.py
    Rscript tests/reference/check_scale_devfun.R

Fits every case of tests/reference/scale_reference.json as tests/test_scale_reference.py does
(same loader and fitglme call) and writes tests/reference/scale_ppl_glmm_estimates.json: fixed
effects, random-effect SDs (python group order, as the JSON's "groups"), sigma, the log-likelihood,
and the git commit of the working tree (with a "dirty" flag: uncommitted changes were present).
check_scale_devfun.R then evaluates lme4's deviance function at these estimates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_scale_reference import CASE_NAMES, _est, reference  # noqa: E402

OUT = ROOT / "tests" / "reference" / "scale_ppl_glmm_estimates.json"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip("\n")


def main() -> None:
    out: dict = {
        "_meta": {
            "script": "tests/reference/export_scale_estimates.py",
            "commit": _git("rev-parse", "HEAD"),
            "dirty_paths": _git("status", "--porcelain", "ppl_glmm").splitlines(),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
    }
    for name in CASE_NAMES:
        t0 = time.perf_counter()
        E = _est(name)
        ref = reference()[name]
        assert E["groups"] == ref["groups"], (E["groups"], ref["groups"])
        out[name] = {
            "fixef": E["fixef"].tolist(),
            "groups": E["groups"],
            "sd": E["sd"].tolist(),
            "sigma": E["sigma"],
            "logLik": E["logLik"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        print(f"{name:26s} logLik {E['logLik']:.10f}  ({out[name]['seconds']} s)")
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
