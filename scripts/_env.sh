# Shared set-up for scripts/*.sh: a Python 3.12 virtual environment in .venv with ppl_glmm installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  PY=""
  for cand in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
  if [ -z "$PY" ] && command -v pyenv >/dev/null 2>&1; then
    PY="$(PYENV_VERSION=$(cat .python-version) pyenv which python)"
  fi
  if [ -z "$PY" ]; then
    echo "Python >= 3.12 not found: install it (e.g. pyenv install 3.12) and retry" >&2
    exit 1
  fi
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${EXTRAS:-test}]"
