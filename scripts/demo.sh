#!/usr/bin/env bash
# Fresh machine -> the MATLAB refit example in Python (fit, random, refit, display).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
.venv/bin/python examples/refit_mfr.py
