"""Console entry point: ``ppl-glmm demo`` (or ``python -m ppl_glmm demo``) runs MATLAB's refit
example (examples/refit_mfr.py)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ppl-glmm")
    parser.add_argument("command", choices=["demo"], help="demo: fit, random and refit on the mfr data")
    parser.parse_args(argv)
    from .demo import main as demo

    demo()
