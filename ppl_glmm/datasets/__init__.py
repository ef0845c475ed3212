"""Example data sets shipped with ppl_glmm.

All data sets are simulated by :mod:`ppl_glmm.datasets.simulate` with a fixed seed and stored as CSV
next to this module, so that loading never depends on a random-number stream.
"""

from __future__ import annotations

from importlib import resources

from ..gc_pause import gc_paused

with gc_paused():  # a new process's import of pandas: see ppl_glmm.gc_pause
    import pandas as pd

__all__ = ["load_mfr"]

SUPPLIER_ORDER = ["C", "B", "A"]


def load_mfr() -> pd.DataFrame:
    """Simulated manufacturing data with the design of MATLAB's ``mfr`` example.

    20 factories x 5 batches = 100 rows; factories 1-10 run the new process. Columns:
    ``factory`` (1..20), ``newprocess`` (0/1), ``time`` (hours), ``temp`` (deg C), ``supplier``
    (categorical, categories ordered C, B, A so that effects coding names ``supplier_C`` and
    ``supplier_B`` as in MATLAB's example), ``defects`` (count), ``time_dev`` = |time - 3| and
    ``temp_dev`` = |temp - 20|.

    Generating process (see :func:`ppl_glmm.datasets.simulate.simulate_mfr`)::

        log mu_ij = 1.45 - 0.35 newprocess_i - 0.10 time_dev_ij - 0.25 temp_dev_ij
                    + s(supplier_ij) + b_i,     b_i ~ N(0, 0.40^2)
        defects_ij ~ Poisson(mu_ij),            s(C, B, A) = (-0.07, 0.07, 0)
    """
    with resources.files(__package__).joinpath("mfr.csv").open("r") as fh:
        df = pd.read_csv(fh)
    df["supplier"] = pd.Categorical(df["supplier"], categories=SUPPLIER_ORDER)
    return df
