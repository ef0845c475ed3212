"""Scaling report (``nox -s bench_scaling``): time and peak memory of ppl_glmm and lme4 against the
number of rows and of levels, for crossed and nested random effects, plus issue 8's target cases.

Every fit runs in a fresh process on each side (so the peak resident memory is that fit's), under
``/usr/bin/time``; within the process one fit on the first 2,000 rows comes first (loading the
compiled functions and, in R, lme4's lazily loaded code), then ``--reps`` timed fits of the whole
data (median reported). Both sides read the same CSV. lme4 runs ``lmer(REML = FALSE)`` for the
normal cases and ``glmer`` (Laplace) otherwise; a fit that does not finish within 10 minutes is
reported as such. Each row records both log-likelihoods and the largest relative difference of the
fixed effects.

Writes ``benchmarks/results/scaling.json`` and ``docs/img/scaling.png``; ``--table`` prints the
table from the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scaling.json"
PLOT = ROOT / "docs" / "img" / "scaling.png"
LME4_TIMEOUT = 600.0  # seconds per lme4 fit

INSTEVAL = "y ~ service + (1|s) + (1|d) + (1|dept)"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)"
CROSSED = "y ~ x + (1|a) + (1|b)"
NESTED = "y ~ x + (1|school/class)"

# name: (data source, formula, family, group, x value) -- group/x place the case in the plot
CASES: dict[str, tuple[str, str, str, str, float]] = {
    "insteval": ("insteval", INSTEVAL, "normal", "target", 73421),
    "insteval_binomial": ("insteval_binomial", INSTEVAL, "binomial", "target", 73421),
    "nested_poisson": ("nested:1000", NESTED, "poisson", "target", 12000),
    "verbagg": ("verbagg", VERBAGG, "binomial", "target", 7584),
    "crossed_n_10k": ("crossed:10000:100:10", CROSSED, "poisson", "rows", 10_000),
    "crossed_n_100k": ("crossed:100000:1000:100", CROSSED, "poisson", "rows", 100_000),
    "crossed_n_1M": ("crossed:1000000:10000:1000", CROSSED, "poisson", "rows", 1_000_000),
    "crossed_levels_100": ("crossed:100000:100:100", CROSSED, "poisson", "crossed levels", 100),
    "crossed_levels_1000": ("crossed:100000:1000:100", CROSSED, "poisson", "crossed levels", 1000),
    "crossed_levels_10000": ("crossed:100000:10000:100", CROSSED, "poisson", "crossed levels", 10_000),
    "nested_levels_100": ("nested:100", NESTED, "poisson", "nested schools", 100),
    "nested_levels_1000": ("nested:1000", NESTED, "poisson", "nested schools", 1000),
    "nested_levels_10000": ("nested:10000", NESTED, "poisson", "nested schools", 10_000),
}
GROUPING = {"s", "d", "dept", "id", "item", "a", "b", "school", "class"}

R_EXPORT = """
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(trailingOnly = TRUE)
d <- InstEval
write.csv(data.frame(y = d$y, s = as.integer(d$s), d = as.integer(d$d), dept = as.integer(d$dept),
                     service = as.integer(d$service) - 1L), a[1], row.names = FALSE)
v <- VerbAgg
write.csv(data.frame(r2 = as.integer(v$r2 == "Y"), Anger = v$Anger, Gender = v$Gender, btype = v$btype,
                     situ = v$situ, id = v$id, item = v$item), a[2], row.names = FALSE)
"""

R_WORKER = """
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(trailingOnly = TRUE)
csv <- a[1]; f <- as.formula(a[2]); family <- a[3]; reps <- as.integer(a[4])
d <- read.csv(csv)
groups <- c("s", "d", "dept", "id", "item", "a", "b", "school", "class")
for (g in intersect(groups, names(d))) d[[g]] <- factor(d[[g]])
fit <- function(data) {
  if (family == "normal") lmer(f, data = data, REML = FALSE)
  else glmer(f, data = data, family = family)
}
invisible(suppressWarnings(fit(d[seq_len(min(2000, nrow(d))), ])))
secs <- numeric(reps)
for (i in seq_len(reps)) secs[i] <- system.time(m <- suppressWarnings(fit(d)))[["elapsed"]]
## lme4's own deviance function at its optimum and at ppl_glmm's estimates (a[5]: their JSON)
devf <- if (family == "normal") lmer(f, data = d, REML = FALSE, devFunOnly = TRUE) else
  glmer(f, data = d, family = family, devFunOnly = TRUE)
at <- function(theta, beta) if (family == "normal") devf(theta) else devf(c(theta, beta))
ours <- jsonlite::fromJSON(a[5])
key <- function(g) paste(sort(strsplit(g, ":")[[1]]), collapse = ":")
names(ours$theta) <- vapply(names(ours$theta), key, "")
th <- unlist(lapply(names(getME(m, "cnms")), function(g) ours$theta[[key(g)]]))
num <- function(x) if (length(x) == 1 && is.finite(x)) sprintf("%.10f", x) else "null"
ll_ours <- tryCatch(-at(th, ours$beta) / 2, error = function(e) NA)
ll_lme4 <- -at(getME(m, "theta"), fixef(m)) / 2
cat(sprintf('{"seconds": [%s], "logLik": %.10f, "beta": [%s], "devfun_logLik_at_lme4": %s, ',
            paste(secs, collapse = ", "), as.numeric(logLik(m)),
            paste(sprintf("%.12g", fixef(m)), collapse = ", "), num(ll_lme4)))
cat(sprintf('"devfun_logLik_at_ppl_glmm": %s}\\n', num(ll_ours)))
"""


def simulate(spec: str) -> pd.DataFrame:
    """``crossed:n:levels_a:levels_b`` or ``nested:schools`` (4 classes x 3 pupils), Poisson, seeded."""
    kind, *args = spec.split(":")
    rng = np.random.default_rng(0)
    if kind == "crossed":
        n, la, lb = map(int, args)
        a, b, x = rng.integers(0, la, n), rng.integers(0, lb, n), rng.normal(size=n)
        eta = 0.5 + 0.3 * x + rng.normal(0, 0.5, la)[a] + rng.normal(0, 0.3, lb)[b]
        return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "a": a, "b": b})
    schools = int(args[0])
    school = np.repeat(np.arange(schools), 12)
    cls = np.repeat(np.arange(4 * schools), 3)
    x = rng.normal(size=school.size)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.5, schools)[school] + rng.normal(0, 0.4, 4 * schools)[cls]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "school": school, "class": cls % 4})


def read_case(csv: Path) -> pd.DataFrame:
    d = pd.read_csv(csv)
    for g in GROUPING & set(d.columns):
        d[g] = d[g].astype(str)
    return d


def worker(case: str, csv: str, reps: int) -> None:
    """One process: warm up on 2,000 rows, then ``reps`` timed fits; prints one JSON line."""
    import warnings

    import ppl_glmm

    warnings.simplefilter("ignore")
    _, formula, family, _, _ = CASES[case]
    data = read_case(Path(csv))
    ppl_glmm.fitglme(data.iloc[:2000], formula, distribution=family)
    rss_warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    secs = []
    for _ in range(reps):
        t = time.perf_counter()
        m = ppl_glmm.fitglme(data, formula, distribution=family)
        secs.append(time.perf_counter() - t)
    beta = m.coefficients["Estimate"].to_numpy()
    res = m._result
    theta = {t.group: res.theta[sl].tolist() for t, sl in zip(m._ws.design.terms, m._ws.re.layout.slices())}
    out = {"seconds": secs, "logLik": float(m.log_likelihood), "beta": beta.tolist(), "rss_warm_kb": rss_warm}
    print(json.dumps({**out, "theta": theta}))


def _timed(cmd: list[str], timeout: float) -> tuple[dict | None, float | None, str]:
    """Run under /usr/bin/time -f %M; (the JSON line, peak RSS in MB, stderr tail)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%M", "-o", tf.name, *cmd] if shutil.which("time") else cmd
        try:
            out = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            return None, None, "timeout"
        rss = tf.read().strip().splitlines()
    peak = float(rss[-1]) / 1024 if rss and rss[-1].isdigit() else None
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), peak, out.stderr[-800:]


def _summary(res: dict | None, peak: float | None, err: str) -> dict:
    if res is None:
        return {"error": "did not finish within 10 minutes" if err == "timeout" else err}
    return {
        "seconds": float(np.median(res["seconds"])),
        "runs": res["seconds"],
        "reps": len(res["seconds"]),
        "statistic": "median",
        "peak_rss_mb": peak,
        "logLik": res["logLik"],
        "beta": res["beta"],
        **({"rss_after_warmup_mb": res["rss_warm_kb"] / 1024} if "rss_warm_kb" in res else {}),
        **{k: res[k] for k in ("theta", "devfun_logLik_at_lme4", "devfun_logLik_at_ppl_glmm") if k in res},
    }


def export_r_data(tmp: Path) -> dict[str, Path]:
    """lme4's InstEval (and its ``y >= 4`` binomial version) and VerbAgg as CSVs in ``tmp``."""
    (tmp / "export.R").write_text(R_EXPORT)
    subprocess.run(
        ["Rscript", str(tmp / "export.R"), str(tmp / "insteval.csv"), str(tmp / "verbagg.csv")], check=True
    )
    ins = pd.read_csv(tmp / "insteval.csv")
    ins.assign(y=(ins["y"] >= 4).astype(int)).to_csv(tmp / "insteval_binomial.csv", index=False)
    return {k: tmp / f"{k}.csv" for k in ("insteval", "insteval_binomial", "verbagg")}


def run(cases: list[str], reps: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {}
        have_r = shutil.which("Rscript") is not None
        if have_r:
            files.update(export_r_data(tmp))
        (tmp / "worker.R").write_text(R_WORKER)
        for case in cases:
            source, formula, family, group, xval = CASES[case]
            if source not in files:
                if source.split(":")[0] not in ("crossed", "nested"):
                    print(f"{case}: needs R for its data, skipped")
                    continue
                files[source] = tmp / f"{source.replace(':', '_')}.csv"
                simulate(source).to_csv(files[source], index=False)
            csv = str(files[source])
            r = 1 if case == "crossed_n_1M" else reps
            ours = _summary(
                *_timed([sys.executable, __file__, "--worker", case, csv, str(r)], timeout=3600.0 * r)
            )
            ours_json = tmp / f"{case}_ours.json"
            ours_json.write_text(json.dumps({"theta": ours.pop("theta", {}), "beta": ours.get("beta", [])}))
            theirs = (
                _summary(
                    *_timed(
                        ["Rscript", str(tmp / "worker.R"), csv, formula, family, str(r), str(ours_json)],
                        timeout=LME4_TIMEOUT * (r + 1),
                    )
                )
                if have_r
                else {"error": "Rscript not found"}
            )
            n = sum(1 for _ in open(csv)) - 1
            row = {"formula": formula, "family": family, "rows": n, "group": group, "x": xval}
            row["date"] = time.strftime("%Y-%m-%d %H:%M")  # rows of earlier runs are kept: each has its own
            row.update({"ppl_glmm": ours, "lme4": theirs})
            if "seconds" in ours and "seconds" in theirs:
                row["ratio_time"] = ours["seconds"] / theirs["seconds"]
                if ours["peak_rss_mb"] and theirs["peak_rss_mb"]:
                    row["ratio_peak_memory"] = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
                row["dlogLik"] = ours["logLik"] - theirs["logLik"]
                b1, b2 = np.array(ours["beta"]), np.array(theirs["beta"])
                row["max_rel_dbeta"] = float(np.max(np.abs(b1 - b2) / np.maximum(np.abs(b2), 1e-8)))
                if theirs.get("devfun_logLik_at_ppl_glmm") is not None:  # > 0: lme4's objective prefers ours
                    row["lme4_devfun_ours_minus_theirs"] = (
                        theirs["devfun_logLik_at_ppl_glmm"] - theirs["devfun_logLik_at_lme4"]
                    )
            out[case] = row
            print(table_line(case, row), flush=True)
    return out


def table_line(case: str, row: dict) -> str:
    a, b = row["ppl_glmm"], row["lme4"]
    if "seconds" not in a:
        return f"{case:22s} ppl_glmm failed: {a.get('error')}"
    s = f"{case:22s} {row['rows']:>9,d} {a['seconds']:8.2f} {a['peak_rss_mb'] or float('nan'):8.0f}"
    if "seconds" in b:
        s += f" {b['seconds']:8.2f} {b['peak_rss_mb'] or float('nan'):8.0f} {row['ratio_time']:6.2f}"
        mem = row.get("ratio_peak_memory", float("nan"))
        s += f" {mem:6.2f} {row['dlogLik']:9.1e} {row['max_rel_dbeta']:8.1e}"
    else:
        s += f"   lme4: {b.get('error')}"
    if "lme4_devfun_ours_minus_theirs" in row:
        s += f" {row['lme4_devfun_ours_minus_theirs']:9.1e}"
    return s


def readme_table(result: dict) -> str:
    """README.md's scaling table: one row per case (seconds to 3 significant digits, MB whole)."""
    lines = [
        "| case | rows | ppl_glmm | lme4 | time ratio | peak memory, ours / lme4 | memory ratio | ΔlogLik |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, row in result["cases"].items():
        a, b = row["ppl_glmm"], row["lme4"]
        if "seconds" not in a:
            continue
        head = f"| `{case}` | {row['rows']:,} | {a['seconds']:.3g} s |"
        if "seconds" not in b:
            lines.append(f"{head} {b.get('error')} | | {a['peak_rss_mb']:.0f} MB / - | | |")
            continue
        lines.append(
            f"{head} {b['seconds']:.3g} s | {row['ratio_time']:.2f} | {a['peak_rss_mb']:.0f} MB / "
            f"{b['peak_rss_mb']:.0f} MB | {row['ratio_peak_memory']:.2f} | {row['dlogLik']:.1e} |"
        )
    return "\n".join(lines)


HEADER = (
    f"{'case':22s} {'rows':>9s} {'ours s':>8s} {'ours MB':>8s} {'lme4 s':>8s} {'lme4 MB':>8s} "
    f"{'t ratio':>6s} {'m ratio':>6s} {'dlogLik':>9s} {'dbeta':>8s} {'devfun':>9s}"
)


def _series(cases: dict, kind: str) -> dict[float, dict]:
    """x -> row for one curve, from each case's data source (a source run under two case names
    counts once): ``rows`` crossed n with n/100 x n/1000 levels; ``crossed`` 100,000 rows with a's
    levels varying (b: 100); ``nested`` schools of 4 classes x 3 pupils."""
    out = {}
    for name, row in cases.items():
        if name not in CASES:
            continue
        spec = CASES[name][0].split(":")
        if (
            kind == "rows"
            and spec[0] == "crossed"
            and int(spec[2]) * 100 == int(spec[1]) == int(spec[3]) * 1000
        ):
            out[float(spec[1])] = row
        elif kind == "crossed" and spec[0] == "crossed" and spec[1] == "100000" and spec[3] == "100":
            out[float(spec[2])] = row
        elif kind == "nested" and spec[0] == "nested":
            out[float(spec[1])] = row
    return dict(sorted(out.items()))


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = result["cases"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = [
        (["rows"], "seconds", "time per fit (s)", "rows: crossed (1|a) + (1|b), n/100 x n/1000 levels"),
        (["rows"], "peak_rss_mb", "peak memory of the process (MB)", "rows: as left"),
        (["crossed", "nested"], "seconds", "time per fit (s)", "levels: a (100,000 rows, b = 100) / schools"),
    ]
    for ax, (kinds, key, ylabel, xlabel) in zip(axes, panels):
        for kind in kinds:
            series = _series(cases, kind)
            for side, style in (("ppl_glmm", "o-"), ("lme4", "s--")):
                pts = [(x, r[side][key]) for x, r in series.items() if r[side].get(key)]
                if pts:
                    ax.plot(*zip(*pts), style, label=side if len(kinds) == 1 else f"{side}, {kind}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"ppl_glmm vs lme4 on one machine ({result['meta'].get('date', '')[:10]})", fontsize=10)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="timed fits per case (the 1M-row case: 1)")
    ap.add_argument("--cases", nargs="*", default=list(CASES), help="subset of: " + ", ".join(CASES))
    ap.add_argument("--table", action="store_true", help="print the table of scaling.json and stop")
    ap.add_argument("--plot", action="store_true", help="redraw docs/img/scaling.png from scaling.json")
    ap.add_argument("--readme", action="store_true", help="print README.md's table from scaling.json")
    ap.add_argument("--worker", nargs=3, metavar=("CASE", "CSV", "REPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    if args.plot:
        plot(json.loads(RESULTS.read_text()))
        return
    if args.readme:
        print(readme_table(json.loads(RESULTS.read_text())))
        return
    if args.table:
        result = json.loads(RESULTS.read_text())
        print(HEADER)
        for case, row in result["cases"].items():
            print(table_line(case, row))
        return
    info = meta(
        f"python benchmarks/scaling.py --reps {args.reps}", with_r=shutil.which("Rscript") is not None
    )
    print(HEADER)
    cases = run(args.cases, args.reps)
    previous = json.loads(RESULTS.read_text())["cases"] if RESULTS.exists() else {}
    result = {"meta": info, "reps": args.reps, "cases": {**previous, **cases}}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    plot(result)


if __name__ == "__main__":
    main()
