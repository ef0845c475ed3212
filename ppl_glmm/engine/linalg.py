"""Linear-algebra errors shared by the engine's factorisations (:mod:`.sparse_cholesky`)."""

from __future__ import annotations

import numpy as np

__all__ = ["NotPositiveDefinite"]


class NotPositiveDefinite(np.linalg.LinAlgError):
    pass
