#!/usr/bin/env bash
# Fresh machine -> the test suite (reference values from lme4/glmmTMB are committed; R is not needed).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
.venv/bin/python -m pytest -q "$@"
