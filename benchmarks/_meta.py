"""What every benchmark results file records besides the timings: date, machine and versions.

A timing means little without the machine it ran on (CPU model, cores, RAM), the versions of
everything timed, and how many repetitions its statistic summarises; the benchmark scripts put
``meta()`` at the top of each results file and give every row its ``reps`` and ``statistic``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_PACKAGES = ("ppl_glmm", "numpy", "scipy", "pandas", "pymc", "pytensor", "arviz", "numba", "formulae")


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "ram_gb": ram_gb(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def python_versions(packages=PYTHON_PACKAGES) -> dict:
    out = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def r_versions(packages=("lme4", "Matrix")) -> dict:
    """R and the given R packages (None when Rscript is missing)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {"R": None}
    code = (
        "cat(paste(R.version$major, R.version$minor, sep='.'), "
        + ", ".join(
            f"tryCatch(as.character(packageVersion('{p}')), error = function(e) 'NA')" for p in packages
        )
        + ", sep = '\\n')"
    )
    out = subprocess.run([rscript, "-e", code], capture_output=True, text=True, check=False).stdout.split()
    values = [None if v == "NA" else v for v in out] + [None] * (len(packages) + 1 - len(out))
    return {"R": values[0], **dict(zip(packages, values[1:]))}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def meta(command: str, *, with_r: bool = False, extra_packages: tuple[str, ...] = ()) -> dict:
    versions = python_versions(PYTHON_PACKAGES + extra_packages)
    if with_r:
        versions.update(r_versions())
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(),
        "machine": machine(),
        "versions": versions,
    }
