"""Which optimum is better where ppl_glmm and lme4 disagree in the scaling report
(``python benchmarks/exact_laplace_check.py [cases]``; needs Rscript with lme4 and jsonlite).

For each GLMM case of ``benchmarks/scaling.py`` it fits ppl_glmm, then in R fits ``glmer`` (its
defaults, as the benchmark) and evaluates, at both optima: lme4's own deviance function
(``glmer(devFunOnly = TRUE)``, -f/2), and an exact Laplace log-likelihood computed independently in R
(Newton on u to a step below 1e-12, then log|A'WA + I| from Matrix's sparse Cholesky at the mode).
lme4's deviance function takes PIRLS steps to ``tolPwrss`` and factors with the previous iterate's
weights, so where the two optima are close its values can be off by more than their difference;
the exact computation arbitrates. Writes ``benchmarks/results/exact_laplace_check.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import meta
from scaling import CASES, export_r_data, read_case, simulate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "exact_laplace_check.json"

R_CHECK = r"""
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1]); f <- as.formula(a[2]); family <- a[3]; ours <- fromJSON(a[4])
groups <- c("s", "d", "dept", "id", "item", "a", "b", "school", "class")
for (g in intersect(groups, names(d))) d[[g]] <- factor(d[[g]])
fam <- if (family == "poisson") poisson() else binomial()
exact <- function(theta, beta) {
  gf <- glFormula(f, data = d, family = fam)
  Lt <- gf$reTrms$Lambdat; Lt@x <- theta[gf$reTrms$Lind]
  A <- t(Lt %*% gf$reTrms$Zt); y <- model.response(gf$fr); eta0 <- as.numeric(gf$X %*% beta)
  at <- function(u) {
    eta <- eta0 + as.numeric(A %*% u)
    if (family == "poisson") { mu <- exp(eta); list(l = dpois(y, mu, log = TRUE), d1 = y - mu, w = mu) }
    else { p <- plogis(eta); list(l = dbinom(y, 1, p, log = TRUE), d1 = y - p, w = p * (1 - p)) }
  }
  hess <- function(o) forceSymmetric(crossprod(A, Diagonal(x = o$w) %*% A) + Diagonal(ncol(A)))
  u <- rep(0, ncol(A))
  for (it in 1:100) {
    o <- at(u); step <- as.numeric(solve(hess(o), as.numeric(crossprod(A, o$d1)) - u))
    h0 <- sum(o$l) - sum(u^2) / 2
    repeat { un <- u + step; on <- at(un)
      if (sum(on$l) - sum(un^2) / 2 >= h0 - 1e-9 || max(abs(step)) < 1e-15) break; step <- step / 2 }
    u <- un
    if (max(abs(step)) < 1e-12) break
  }
  o <- at(u)
  sum(o$l) - sum(u^2) / 2 - as.numeric(determinant(hess(o), logarithm = TRUE)$modulus) / 2
}
m <- suppressWarnings(glmer(f, data = d, family = fam))
devf <- glmer(f, data = d, family = fam, devFunOnly = TRUE)
key <- function(g) paste(sort(strsplit(g, ":")[[1]]), collapse = ":")
names(ours$theta) <- vapply(names(ours$theta), key, "")
th <- unlist(lapply(names(getME(m, "cnms")), function(g) ours$theta[[key(g)]]))
res <- list(
  lme4_logLik = as.numeric(logLik(m)),
  lme4_theta = unname(getME(m, "theta")), lme4_beta = unname(fixef(m)),
  devfun_at_lme4 = -devf(c(getME(m, "theta"), fixef(m))) / 2,
  devfun_at_ppl_glmm = -devf(c(th, ours$beta)) / 2,
  exact_at_lme4 = exact(getME(m, "theta"), fixef(m)), exact_at_ppl_glmm = exact(th, ours$beta))
cat(toJSON(res, digits = NA, auto_unbox = TRUE), "\n")
"""


def main() -> None:
    import ppl_glmm

    warnings.simplefilter("ignore")
    cases = sys.argv[1:] or ["nested_poisson", "verbagg", "insteval_binomial"]
    info = meta("python benchmarks/exact_laplace_check.py " + " ".join(cases), with_r=True)
    out = json.loads(OUT.read_text())["cases"] if OUT.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "check.R").write_text(R_CHECK)
        export_r_data(tmp)
        for case in cases:
            source, formula, family, _, _ = CASES[case]
            csv = tmp / f"{source.replace(':', '_')}.csv"
            if not csv.exists():
                simulate(source).to_csv(csv, index=False)
            m = ppl_glmm.fitglme(read_case(csv), formula, distribution=family)
            terms, layout = m._ws.design.terms, m._ws.re.layout
            theta = {t.group: m._result.theta[sl].tolist() for t, sl in zip(terms, layout.slices())}
            ours = {"theta": theta, "beta": m._result.beta.tolist(), "logLik": float(m.log_likelihood)}
            (tmp / "ours.json").write_text(json.dumps(ours))
            r = subprocess.run(
                ["Rscript", str(tmp / "check.R"), str(csv), formula, family, str(tmp / "ours.json")],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res["ppl_glmm_logLik"] = ours["logLik"]
            res["ppl_glmm_theta"], res["ppl_glmm_beta"] = theta, ours["beta"]
            res["exact_ours_minus_lme4"] = res["exact_at_ppl_glmm"] - res["exact_at_lme4"]
            res["devfun_ours_minus_lme4"] = res["devfun_at_ppl_glmm"] - res["devfun_at_lme4"]
            res["ppl_glmm_minus_exact_at_ppl_glmm"] = ours["logLik"] - res["exact_at_ppl_glmm"]
            out[case] = res
            print(
                f"{case:20s} exact(ours) - exact(lme4) = {res['exact_ours_minus_lme4']:+.2e}; "
                f"lme4 devfun(ours) - devfun(lme4) = {res['devfun_ours_minus_lme4']:+.2e}; "
                f"our logLik - exact(ours) = {res['ppl_glmm_minus_exact_at_ppl_glmm']:+.1e}",
                flush=True,
            )
    OUT.write_text(json.dumps({"meta": info, "cases": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
