"""Parametric bootstrap of the mfr model against lme4's ``bootMer``, in the same run
(``nox -s bench_bootstrap``; not a test).

* ``serial``: ``parametric_bootstrap(model, nsim)`` in this process, after a 5-replicate warm-up
  (the refit's warm-start Hessian and the sampler are built there);
* ``loky_cold``: ``n_jobs=2`` on a new loky executor: the two worker processes start, import
  ppl_glmm and PyMC, build the model and load the compiled functions, then refit;
* ``loky_warm``: the same call again on the kept workers (the steady state of repeated runs, and of
  long runs, where start-up is amortised);
* ``bootMer``: ``lme4::bootMer(fit, FUN, nsim, type = "parametric")`` with FUN the fixed effects,
  theta and logLik, serially and (``--r-ncpus 2``, the default) with ``parallel = "multicore"``.

Reported: seconds, seconds per replicate, the ratio to bootMer's serial time per replicate (target
<= 0.03) and the speed-up of 2 workers over serial (target: near 2). The serial and parallel
replicate tables are checked to be identical. The load average before and after is recorded: other
processes on the machine slow both sides. Writes ``benchmarks/results/bootstrap.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
MFR_CSV = ROOT / "tests" / "reference" / "data" / "mfr.csv"
FORMULA = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)"


def _row(seconds: float, nsim: int, result=None, **extra) -> dict:
    row = {"seconds": seconds, "nsim": nsim, "per_replicate": seconds / nsim}
    row.update(reps=1, statistic="one run")
    if result is not None:
        row.update(n_failed=result.n_failed, n_not_converged=result.n_not_converged)
    row.update(extra)
    return row


def python_timings(nsim: int, workers: int) -> dict:
    import pandas as pd

    import ppl_glmm
    from ppl_glmm.datasets import load_mfr

    model = ppl_glmm.fitglme(
        load_mfr(), FORMULA, distribution="Poisson", link="log", dummy_var_coding="effects"
    )
    ppl_glmm.parametric_bootstrap(model, 5, rng=0, progress=False)  # warm-up
    out = {}
    t, c = time.perf_counter(), time.process_time()
    serial = ppl_glmm.parametric_bootstrap(model, nsim, rng=1, progress=False)
    cpu = time.process_time() - c
    out["serial"] = _row(time.perf_counter() - t, nsim, serial, cpu_seconds=cpu, cpu_per_replicate=cpu / nsim)
    from loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # a cold start: new worker processes
    for label in ("loky_cold", "loky_warm"):
        t = time.perf_counter()
        par = ppl_glmm.parametric_bootstrap(model, nsim, rng=1, n_jobs=workers, progress=False)
        out[label] = _row(time.perf_counter() - t, nsim, par, workers=workers)
        pd.testing.assert_frame_equal(par.replicates, serial.replicates)  # same seed, same replicates
    out["identical_replicates"] = True
    out["worker_probe"] = worker_probe(model, workers)
    return out


def _probe(token: str, data: bytes, task, indexes: list[int]) -> dict:
    """Wall and CPU seconds per replicate inside one worker (after 3 untimed replicates)."""
    from ppl_glmm.bootstrap import runner

    models = runner._worker_models(token, data)
    runner.run_batch(models, task, indexes[:3])
    t, c = time.perf_counter(), time.process_time()
    runner.run_batch(models, task, indexes)
    return {
        "wall_per_replicate": (time.perf_counter() - t) / len(indexes),
        "cpu_per_replicate": (time.process_time() - c) / len(indexes),
    }


def worker_probe(model, workers: int, n: int = 100) -> dict:
    """Every worker runs n replicates at once: CPU / wall in each worker is the share of a core it
    got (1: a core to itself, so the speed-up is linear; below 1: other processes took the cores)."""
    from loky import get_reusable_executor

    from ppl_glmm.bootstrap import runner, statistics

    names = tuple(p.column for p in statistics.default_parameters(model))
    task = statistics.Task("bootstrap", names, 1, ())
    token, data = runner._payload((model,))
    ex = get_reusable_executor(max_workers=workers, timeout=300, env=dict(runner._SINGLE_THREAD_ENV))
    rows = [
        f.result() for f in [ex.submit(_probe, token, data, task, list(range(n))) for _ in range(workers)]
    ]
    return {
        "replicates_per_worker": n,
        "workers": rows,
        "cpu_share": [r["cpu_per_replicate"] / r["wall_per_replicate"] for r in rows],
        "load_average": list(os.getloadavg()),
    }


def lme4_timings(nsim: int, ncpus: int) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: install R and lme4 to compare", file=sys.stderr)
        return None
    out = subprocess.run(
        [rscript, str(ROOT / "benchmarks" / "bootstrap_bench.R"), str(MFR_CSV), str(nsim), str(ncpus)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nsim", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--r-ncpus", type=int, default=2, help="bootMer multicore processes (1: serial only)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # singular or non-converged replicates are counted, not timed
    info = meta(
        f"python benchmarks/bootstrap.py --nsim {args.nsim} --workers {args.workers} "
        f"--r-ncpus {args.r_ncpus}",
        with_r=shutil.which("Rscript") is not None,
        extra_packages=("loky", "dask", "distributed", "tqdm"),
    )
    py = python_timings(args.nsim, args.workers)
    r = lme4_timings(args.nsim, args.r_ncpus)
    info["machine"]["load_average_at_end"] = list(os.getloadavg())
    result = {"meta": info, "nsim": args.nsim, "ppl_glmm": py, "lme4": r}
    serial = py["serial"]["per_replicate"]
    ratios = {"speedup_loky_warm": serial / py["loky_warm"]["per_replicate"]}
    ratios["speedup_loky_cold"] = serial / py["loky_cold"]["per_replicate"]
    ratios["cpu_share_in_workers"] = min(py["worker_probe"]["cpu_share"])
    if r:
        boot = r["bootMer"]["per_replicate"]
        ratios["serial_cpu_vs_bootMer_cpu"] = (
            py["serial"]["cpu_per_replicate"] / r["bootMer"]["cpu_per_replicate"]
        )
        for k in ("serial", "loky_cold", "loky_warm"):
            ratios[f"{k}_vs_bootMer"] = py[k]["per_replicate"] / boot
        if r.get("bootMer_multicore"):
            ratios["bootMer_multicore_speedup"] = boot / r["bootMer_multicore"]["per_replicate"]
            ratios["loky_warm_vs_bootMer_multicore"] = (
                py["loky_warm"]["per_replicate"] / r["bootMer_multicore"]["per_replicate"]
            )
        result["targets"] = {
            "serial per replicate <= 0.03 x bootMer": ratios["serial_vs_bootMer"] <= 0.03,
            "2 workers (warm) speed-up >= 1.7": ratios["speedup_loky_warm"] >= 1.7,
        }
    result["ratios"] = ratios
    print(f"{'run':22s} {'seconds':>9s} {'s/replicate':>12s}")
    for k in ("serial", "loky_cold", "loky_warm"):
        print(f"ppl_glmm {k:13s} {py[k]['seconds']:9.2f} {py[k]['per_replicate']:12.5f}")
    if r:
        for k in ("bootMer", "bootMer_multicore"):
            if r.get(k):
                print(f"lme4 {k:17s} {r[k]['seconds']:9.2f} {r[k]['per_replicate']:12.5f}")
    for k, v in ratios.items():
        print(f"{k}: {v:.4g}")
    for k, v in result.get("targets", {}).items():
        print(f"target {k}: {'met' if v else 'NOT met'}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "bootstrap.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'bootstrap.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
