"""Start-up: whole-process wall time of a script that fits the seed model, against Rscript with lme4.

Issue 8's target: a fresh ``python script.py`` that imports ppl_glmm and fits the seed model (the
mfr Poisson GLMM of README.md) no slower than ``Rscript`` running lme4 on the same model. Timed:

* whole processes (``--reps`` each, default 5, after one warm-up run of each that fills the
  byte-code, PyTensor and Numba disk caches), interleaved so that a change of the machine's load
  hits every command alike: ``python -c pass`` and ``Rscript -e 'invisible(NULL)'`` (interpreter
  start), ``python -c 'import ppl_glmm'``, the seed script, and the same lme4 fit by ``Rscript``
  (``library(lme4)``, ``read.csv``, ``glmer``; effects coding as ``contr.sum``);
* the first-call cost of each piece, in new processes (one warm-up, then ``--reps``): the imports
  in the order a fit makes them, the design, the PyMC model build (none when the function is
  stored: the model is built on first use), finding and loading the stored
  compiled function, its first call (the backend's own start: Numba's target context), the rest of
  the first fit and a second fit in the same process; once per PyTensor backend: the default
  (PyTensor's C backend, which ppl_glmm picks for fits of up to 1,000 rows when a C++ compiler is
  present), Numba (forced: ``PYTENSOR_FLAGS=mode=NUMBA``; ppl_glmm's pick for larger fits), and
  JAX when it is installed; and the
  same split for R (``library(lme4)``, reading the data, the first and a second ``glmer``); and,
  for each backend, one call of the compiled function on 100, 10,000 and 100,000 rows (what a
  backend trades against its start-up).

Every timing records wall and CPU (user + system) seconds; the tables are medians (the CPU time of
a process moves much less than its wall time when other work shares the machine). The byte code of
ppl_glmm is written as by any install (``PYTHONDONTWRITEBYTECODE`` is cleared for the children).

Writes ``benchmarks/results/startup.json`` (with ``meta``: date, machine, load, versions).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
MFR_CSV = ROOT / "ppl_glmm" / "datasets" / "mfr.csv"
FORMULA = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"

SEED_PY = f"""\
import ppl_glmm
from ppl_glmm.datasets import load_mfr

glme = ppl_glmm.fitglme(
    load_mfr(),
    {FORMULA!r},
    distribution="Poisson",
    link="log",
    fit_method="Laplace",
    dummy_var_coding="effects",
)
"""

# The same model in lme4: supplier's levels in the order C, B, A with contr.sum (MATLAB's
# 'effects' coding, as tests/reference/make_reference.R). With an argument: the pieces as JSON.
SEED_R = f"""\
pieces <- length(commandArgs(trailingOnly = TRUE)) > 0
t <- function() {{ p <- proc.time(); c(p[["elapsed"]], p[["user.self"]] + p[["sys.self"]]) }}
t0 <- t()
suppressPackageStartupMessages(library(lme4))
t1 <- t()
d <- read.csv("{MFR_CSV}")
d$factory <- factor(d$factory)
d$supplier <- factor(d$supplier, levels = c("C", "B", "A"))
contrasts(d$supplier) <- contr.sum(3)
t2 <- t()
form <- defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory)
fit <- glmer(form, family = poisson, data = d)
t3 <- t()
if (pieces) {{
  fit <- glmer(form, family = poisson, data = d)
  t4 <- t()
  row <- function(name, a, b) sprintf('"%s": [%.6f, %.6f]', name, b[1] - a[1], b[2] - a[2])
  cat('{{"pieces": {{', paste(row("library(lme4)", t0, t1), row("read.csv + factors", t1, t2),
                  row("first glmer", t2, t3), row("second glmer (warm process)", t3, t4), sep = ", "),
      "}}}}\\n")
}}
"""

# One new process: each piece's increment of wall and CPU time, as JSON on the last line.
PIECES_PY = f"""\
import importlib, json, sys, time

BACKEND_MODULE = sys.argv[1]
pieces = {{}}


def clock():
    return time.perf_counter(), time.process_time()


def add(name, t0):
    w, c = clock()
    p = pieces.setdefault(name, [0.0, 0.0])
    p[0] += w - t0[0]
    p[1] += c - t0[1]


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            add(name, t0)

    return wrapper


t = clock(); import ppl_glmm; add("import ppl_glmm", t)
t = clock(); from ppl_glmm.datasets import load_mfr; data = load_mfr(); add("import pandas, load_mfr()", t)
# each import as a fit makes it (the lazy name, PyTensor through the backend module, the backend
# while the collector is paused: ppl_glmm.gc_pause)
t = clock(); ppl_glmm.fitglme; add("import the fit's modules (formulae, SciPy, ppl_glmm)", t)
from ppl_glmm.backend import import_pytensor
from ppl_glmm.gc_pause import gc_paused
t = clock(); import_pytensor(); add("import pytensor (not PyMC)", t)
t = clock()
with gc_paused():
    importlib.import_module(BACKEND_MODULE)
add("import the backend: " + BACKEND_MODULE, t)

from ppl_glmm import api, fitting, pymc_model

INNER = ["design", "PyMC model build", "find the stored function (index, or graph + hash)",
         "load the compiled function (unpickle)", "first call of the compiled function"]
api.build_design = timed(INNER[0], api.build_design)
fitting.build_pymc_model = timed(INNER[1], fitting.build_pymc_model)
for name in ("_index_key", "_read_index", "_observation_graph", "graph_key"):
    if hasattr(pymc_model, name):  # (ppl_glmm before the index: the graph and its hash only)
        setattr(pymc_model, name, timed(INNER[2], getattr(pymc_model, name)))
pymc_model._load = timed(INNER[3], pymc_model._load)
call = pymc_model.ObservationFunction.__call__


def first_call(self, *args):
    pymc_model.ObservationFunction.__call__ = call
    return timed(INNER[4], call)(self, *args)


pymc_model.ObservationFunction.__call__ = first_call
kw = dict(distribution="Poisson", link="log", fit_method="Laplace", dummy_var_coding="effects")
t = clock(); ppl_glmm.fitglme(data, {FORMULA!r}, **kw); add("first fitglme", t)
first = pieces.pop("first fitglme")
rest = [first[i] - sum(pieces.get(k, [0.0, 0.0])[i] for k in INNER) for i in (0, 1)]
pieces["rest of the first fit"] = rest
t = clock(); ppl_glmm.fitglme(data, {FORMULA!r}, **kw); add("second fitglme (warm process)", t)
# the compiled function's own speed at larger n (what a backend trades against its start-up)
import timeit
import numpy as np

obs = next(iter(pymc_model._CACHE.values()))
rng = np.random.default_rng(0)
per_call = {{}}
for n in (100, 10_000, 100_000):
    args = (0.3 * rng.normal(size=n), rng.poisson(1.0, n).astype(obs.y_dtype), np.ones(n),
            np.ones(n, dtype=obs.trials_dtype), np.zeros(n))
    number = max(1, 200_000 // n)
    per_call[str(n)] = min(timeit.repeat(lambda: obs(*args), number=number, repeat=5)) / number
print(json.dumps({{"pieces": pieces, "per_call": per_call,
                  "compiled": pymc_model.COMPILE_COUNT["observation"]}}))
"""

PYTHON_BACKENDS = {
    # name: (PYTENSOR_FLAGS, module whose import is that backend's). "default": what ppl_glmm picks
    # for the seed's 100 rows (PyTensor's C backend, ppl_glmm.backend.engine_mode); the others are
    # forced through PyTensor's configuration.
    "default": ("", "pytensor.link.c.cvm"),
    # the same with PyTensor's caches holding only what the seed script compiles ({tmp}: this
    # run's temporary directory): PyTensor's C module cache reads the key of every module compiled
    # on the machine in each new process, so its load time grows with the machine's cache
    "default_own_cache": ("base_compiledir={tmp}/pytensor", "pytensor.link.c.cvm"),
    "numba": ("mode=NUMBA", "pytensor.link.numba.dispatch"),
    "jax": ("mode=JAX", "pytensor.link.jax.dispatch"),
}


def child_env(pytensor_flags: str = "") -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an install has its byte code; so do the children
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if pytensor_flags:
        env["PYTENSOR_FLAGS"] = ",".join(filter(None, [env.get("PYTENSOR_FLAGS"), pytensor_flags]))
    return env


def run(cmd: list[str], env: dict, cwd: str) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one process, and its stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out.stdout


def stats(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": [round(v, 4) for v in values],
        "reps": len(values),
        "statistic": "median",
    }


def median_interval(values: list[float], level: float = 0.95) -> dict:
    """The median of ``values`` and a distribution-free interval for it from their order
    statistics: (x_(k), x_(n+1-k)), with the largest k whose coverage 1 - 2 P(Binomial(n, 1/2) < k)
    is at least ``level`` (for 9 values: the 2nd and 8th, coverage 96%); None below 6 values."""
    import math

    x, n = sorted(values), len(values)
    out = {"median": statistics.median(x), "interval": None, "coverage": None}
    k, below = 0, 0.0  # below: P(B < k + 1), B ~ Binomial(n, 1/2)
    while True:
        below += math.comb(n, k) / 2**n
        if 1 - 2 * below < level:
            break
        k += 1
    if k >= 1:
        cover = 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n
        out["interval"], out["coverage"] = [x[k - 1], x[n - k]], cover
    return out


def paired_ratios(whole: dict, row: str, reference: str) -> dict:
    """Round-by-round wall-time ratios of ``row`` to ``reference`` (the commands run interleaved,
    so each round's two processes met the same load), with :func:`median_interval`."""
    a, b = whole[row]["wall"]["values"], whole[reference]["wall"]["values"]
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {"values": [round(r, 4) for r in ratios], **median_interval(ratios)}


def whole_processes(commands: dict, reps: int, cwd: str) -> dict:
    for cmd, env in commands.values():  # warm-up: byte code, PyTensor's and Numba's disk caches
        run(cmd, env, cwd)
    times = {name: ([], []) for name in commands}
    for _ in range(reps):
        for name, (cmd, env) in commands.items():
            wall, cpu, _ = run(cmd, env, cwd)
            times[name][0].append(wall)
            times[name][1].append(cpu)
    return {name: {"wall": stats(w), "cpu": stats(c)} for name, (w, c) in times.items()}


def pieces(cmd: list[str], env: dict, reps: int, cwd: str) -> dict:
    run(cmd, env, cwd)  # warm-up
    rows: dict[str, tuple[list, list]] = {}
    per_call: dict[str, list] = {}
    compiled = 0
    for _ in range(reps):
        _, _, out = run(cmd, env, cwd)
        answer = json.loads(out.strip().splitlines()[-1])
        compiled += answer.get("compiled", 0)
        for n, t in answer.get("per_call", {}).items():
            per_call.setdefault(n, []).append(t)
        for name, (wall, cpu) in answer["pieces"].items():
            rows.setdefault(name, ([], []))
            rows[name][0].append(wall)
            rows[name][1].append(cpu)
    if compiled:  # the timed processes must find the function the warm-up stored
        raise RuntimeError(f"{' '.join(cmd)}: {compiled} observation functions compiled after the warm-up")
    med = statistics.median
    out = {
        name: {"wall": med(w), "cpu": med(c), "reps": len(w), "statistic": "median"}
        for name, (w, c) in rows.items()
    }
    return out, {n: med(t) for n, t in per_call.items()}


def c_cache_modules() -> int | None:
    """Compiled modules in this machine's PyTensor C cache (each new process reads all their keys)."""
    out = subprocess.run(
        [sys.executable, "-c", "import pytensor; print(pytensor.config.compiledir)"],
        env=child_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return None
    return len(list(Path(out.stdout.strip().splitlines()[-1]).glob("*/key.pkl")))


def backend_skip_reason(name: str) -> str | None:
    if name == "jax" and importlib.util.find_spec("jax") is None:
        return "jax is not installed"
    if name.startswith("default") and not shutil.which("g++") and not shutil.which("c++"):
        return "no C++ compiler (PyTensor's C backend compiles its modules with g++; fits use Numba)"
    return None


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"  {'':58s} {'wall (s)':>9s} {'CPU (s)':>9s}")
    for name, row in rows.items():
        w = row["wall"]["median"] if isinstance(row["wall"], dict) else row["wall"]
        c = row["cpu"]["median"] if isinstance(row["cpu"], dict) else row["cpu"]
        print(f"  {name:58s} {w:9.3f} {c:9.3f}")


# The rows that README.md and docs/algorithms.md quote (tests/test_docs.py checks them against the file)
README_ROWS = {
    "`python -c 'import ppl_glmm'`": "python -c 'import ppl_glmm'",
    "`python seed.py`: `import ppl_glmm`, `load_mfr()`, `fitglme`": (
        "python seed.py (import ppl_glmm, fit the seed model)"
    ),
    "`python seed.py`, PyTensor's caches holding only the seed's functions": (
        "python seed.py, PyTensor caches holding only the seed's functions"
    ),
    "`Rscript seed.R`: `library(lme4)`, `read.csv`, `glmer`": (
        "Rscript seed.R (library(lme4), read.csv, glmer)"
    ),
    "`python -c pass`, `Rscript -e 'invisible(NULL)'` (interpreters alone)": (
        "python -c pass",
        "Rscript -e 'invisible(NULL)'",
    ),
}
PIECE_BACKENDS = ("default", "default_own_cache", "numba")
SEED = "python seed.py (import ppl_glmm, fit the seed model)"
SEED_OWN = "python seed.py, PyTensor caches holding only the seed's functions"
SEED_R_ROW = "Rscript seed.R (library(lme4), read.csv, glmer)"


def piece(pieces: dict, label: str) -> dict:
    """A backend's row for a table label ("import the backend" names the backend's module)."""
    return next(v for k, v in pieces.items() if k == label or k.startswith(label + ": "))


def tables(result: dict) -> str:
    """README.md's whole-process table and docs/algorithms.md's pieces table (2 significant digits)."""
    w = result["whole_process"]
    out = ["| whole process | wall | CPU |", "|---|---|---|"]
    for label, key in README_ROWS.items():
        keys = key if isinstance(key, tuple) else (key,)
        cells = [" / ".join(f"{w[k][m]['median']:.2g} s" for k in keys) for m in ("wall", "cpu")]
        out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    ratio = result["seed_python_over_rscript"]
    own = result["seed_python_own_cache_over_rscript"]
    out += ["", f"seed script / Rscript: {ratio['wall']:.2g}x wall, {ratio['cpu']:.2g}x CPU"]
    out += [f"the same, the seed's own caches: {own['wall']:.2g}x wall, {own['cpu']:.2g}x CPU"]
    for name, p in result.get("paired_wall_ratios", {}).items():
        if p["interval"]:
            lo, hi = p["interval"]
            out.append(
                f"paired wall ratios, {name}: median {p['median']:.2g}x, {100 * p['coverage']:.0f}% "
                f"interval {lo:.2g}x to {hi:.2g}x"
            )
    out.append("")
    fc = result["first_call"]
    out += [
        "| piece (wall) | C (the default up to 1,000 rows) | C, the seed's own cache | Numba |",
        "|---|---|---|---|",
    ]
    labels = [k.split(": ")[0] for k in fc["default"]["pieces"]]
    for label in labels:
        cells = [f"{seconds(piece(fc[b]['pieces'], label)['wall'])} s" for b in PIECE_BACKENDS]
        out.append(f"| {label} | {' | '.join(cells)} |")
    for n in fc["default"]["per_call_seconds_by_n"]:
        cells = [f"{1e3 * fc[b]['per_call_seconds_by_n'][n]:.2g} ms" for b in PIECE_BACKENDS]
        out.append(f"| one call of the compiled function, {int(n):,} rows | {' | '.join(cells)} |")
    out += ["", "| R piece (wall) | lme4 |", "|---|---|"]
    out += [f"| {k} | {seconds(v['wall'])} s |" for k, v in result["first_call_r"].items()]
    return "\n".join(out)


def seconds(value: float) -> str:
    """2 significant digits; below a millisecond, 0.000 (nothing to speak of)."""
    return f"{value:.2g}" if value >= 1e-3 else "0.000"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "5")))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json")
    ap.add_argument("--backends", default=",".join(PYTHON_BACKENDS), help="comma-separated subset")
    ap.add_argument("--table", action="store_true", help="print the docs' tables from --out and stop")
    args = ap.parse_args()
    if args.table:
        print(tables(json.loads(args.out.read_text())))
        return 0
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: the lme4 rows are skipped (apt-get install r-cran-lme4)", file=sys.stderr)
    info = meta(f"python benchmarks/startup.py --reps {args.reps}", with_r=rscript is not None)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="ppl_glmm_startup_") as tmp:
        (Path(tmp) / "seed.py").write_text(SEED_PY)
        (Path(tmp) / "seed.R").write_text(SEED_R)
        (Path(tmp) / "pieces.py").write_text(PIECES_PY)
        env = child_env()
        commands = {
            "python -c pass": ([py, "-c", "pass"], env),
            "python -c 'import ppl_glmm'": ([py, "-c", "import ppl_glmm"], env),
            "python seed.py (import ppl_glmm, fit the seed model)": ([py, "seed.py"], env),
        }
        if rscript:
            commands["Rscript -e 'invisible(NULL)'"] = ([rscript, "-e", "invisible(NULL)"], env)
            commands[SEED_R_ROW] = ([rscript, "seed.R"], env)
        commands[SEED_OWN] = ([py, "seed.py"], child_env(f"base_compiledir={tmp}/pytensor"))
        whole = whole_processes(commands, args.reps, tmp)
        first_call = {}
        for name in args.backends.split(","):
            flags, module = PYTHON_BACKENDS[name]
            reason = backend_skip_reason(name)
            if reason:
                first_call[name] = {"skipped": reason}
                continue
            child = child_env(flags.format(tmp=tmp))
            rows, per_call = pieces([py, "pieces.py", module], child, args.reps, tmp)
            first_call[name] = {
                "pytensor_flags": flags,
                "pieces": rows,
                "per_call_seconds_by_n": per_call,
                "per_call_note": "one call of the Poisson-log observation function on n rows, best of 5 "
                "timeit repeats in each process, median over the processes",
            }
        r_pieces = pieces([rscript, "seed.R", "pieces"], env, args.reps, tmp)[0] if rscript else None
    result = {"meta": info, "reps": args.reps, "statistic": "median", "whole_process": whole}
    result["pytensor_c_cache_modules"] = c_cache_modules()
    if rscript:
        seed_r = whole[SEED_R_ROW]
        ratio, ratio_own = (
            {k: whole[row][k]["median"] / seed_r[k]["median"] for k in ("wall", "cpu")}
            for row in (SEED, SEED_OWN)
        )
        result["seed_python_over_rscript"] = ratio
        result["seed_python_own_cache_over_rscript"] = ratio_own
        result["paired_wall_ratios"] = {
            "seed": paired_ratios(whole, SEED, SEED_R_ROW),
            "seed_own_cache": paired_ratios(whole, SEED_OWN, SEED_R_ROW),
        }
        result["target_met"] = {
            "seed script wall time <= Rscript (lme4) wall time": ratio["wall"] <= 1.0,
            "the same, PyTensor caches holding only the seed's functions": ratio_own["wall"] <= 1.0,
        }
    result["first_call"] = first_call
    result["first_call_r"] = r_pieces
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print_table(f"Whole processes (median of {args.reps} after a warm-up)", whole)
    for name, res in first_call.items():
        if "skipped" in res:
            print(f"\nFirst-call pieces, {name} backend: skipped ({res['skipped']})")
        else:
            print_table(f"First-call pieces in a new process, {name} backend", res["pieces"])
            calls = ", ".join(f"n={n}: {1e3 * t:.3g} ms" for n, t in res["per_call_seconds_by_n"].items())
            print(f"  one call of the compiled function: {calls}")
    if r_pieces:
        print_table("First-call pieces in a new R process", r_pieces)
    if rscript:
        print(f"\nseed script / Rscript: wall {ratio['wall']:.2f}x, CPU {ratio['cpu']:.2f}x")
        print(f"the same, the seed's own caches: wall {ratio_own['wall']:.2f}x, CPU {ratio_own['cpu']:.2f}x")
        for name, p in result["paired_wall_ratios"].items():
            if p["interval"]:
                lo, hi = p["interval"]
                print(
                    f"paired wall ratios, {name}: median {p['median']:.2f}x, "
                    f"{100 * p['coverage']:.0f}% interval {lo:.2f}x to {hi:.2f}x"
                )
        print(f"(modules in this machine's PyTensor C cache: {result['pytensor_c_cache_modules']})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
