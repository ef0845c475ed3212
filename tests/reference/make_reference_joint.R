## Reference values for the joint [beta; b] inference (issue 9): lme4's conditional modes
## and conditional variances, ranef(fit, condVar = TRUE).
##
## Run from the repository root:
##     Rscript tests/reference/make_reference_joint.R
##
## Output: tests/reference/joint_reference.json (and tests/reference/data/penicillin.csv,
## lme4's Penicillin exported once, a crossed model).
##
## Cases (the same data CSVs and formulas as make_reference.R):
##   cbpp_binomial       glmer binomial/logit, (1 | herd)
##   mfr_poisson_effects glmer Poisson/log, (1 | factory), supplier with contr.sum
##   sleepstudy_lmm      lmer ML, (Days | Subject): correlated 2 x 2 blocks
##   penicillin_crossed  lmer ML, (1 | plate) + (1 | sample): crossed
## glmer at tolPwrss = 1e-13 and bobyqa rhoend = 1e-12 (make_reference.R's tight
## setting); lmer at rhoend = 1e-12.
##
## JSON per case: logLik, fixef, vcov (lme4's RX-based conditional covariance,
## use.hessian = FALSE), and ranef[[group]] = list(levels, names, values (one
## array per name, one value per level), postVar (levels x q x q, row-major
## nesting: postVar[[level]][[i]][[j]])). postVar is lme4's condVar: the
## covariance of b given y and beta-hat, theta-hat (sigma^2 Lambda H^-1 Lambda'),
## for a GLMM with H from the PIRLS (Fisher) weights, which equal the observed
## information for canonical links (both GLMM cases here are canonical).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

if (!file.exists("tests/reference/data/mfr.csv"))
  stop("run this script from the repository root")

data_dir <- "tests/reference/data"
out_json <- "tests/reference/joint_reference.json"

data("Penicillin", package = "lme4")
pen_csv <- file.path(data_dir, "penicillin.csv")
if (!file.exists(pen_csv))
  write.csv(data.frame(diameter = Penicillin$diameter,
                       plate = as.character(Penicillin$plate),
                       sample = as.character(Penicillin$sample)),
            pen_csv, row.names = FALSE)

source("tests/reference/reference_data.R")
mfr <- read_mfr()
cbpp_d <- read_cbpp()
sleep_d <- read_sleepstudy()

pen <- rd("penicillin.csv")
pen$plate <- factor(pen$plate, levels = sort(unique(pen$plate)))
pen$sample <- factor(pen$sample, levels = sort(unique(pen$sample)))

gctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13,
                      optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

fits <- list(
  cbpp_binomial = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                        data = cbpp_d, family = binomial, control = gctrl),
  mfr_poisson_effects = glmer(
    defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory),
    data = mfr, family = poisson, control = gctrl),
  sleepstudy_lmm = lmer(Reaction ~ Days + (Days | Subject), data = sleep_d,
                        REML = FALSE, control = lctrl),
  penicillin_crossed = lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = pen,
                            REML = FALSE, control = lctrl)
)

ranef_cv <- function(fit) {
  rr <- ranef(fit, condVar = TRUE)
  out <- list()
  for (g in names(rr)) {
    d <- rr[[g]]
    pv <- attr(d, "postVar")  # q x q x levels
    q <- dim(pv)[1]
    out[[g]] <- list(
      levels = I(rownames(d)),
      names = I(colnames(d)),
      values = lapply(colnames(d), function(cn) I(unname(d[[cn]]))),
      postVar = lapply(seq_len(dim(pv)[3]), function(k)
        lapply(seq_len(q), function(i) I(unname(pv[i, , k]))))
    )
  }
  out
}

res <- list()
for (nm in names(fits)) {
  f <- fits[[nm]]
  V <- if (inherits(f, "glmerMod")) vcov(f, use.hessian = FALSE) else vcov(f)
  res[[nm]] <- list(
    logLik = as.numeric(logLik(f)),
    fixef = I(unname(fixef(f))),
    vcov = lapply(seq_len(nrow(V)), function(i) I(unname(as.matrix(V)[i, ]))),
    sigma = sigma(f),
    ranef = ranef_cv(f)
  )
}
res$meta <- list(
  lme4 = as.character(packageVersion("lme4")),
  R = R.version.string,
  glmer_control = "glmerControl(optimizer='bobyqa', tolPwrss=1e-13, optCtrl=list(rhoend=1e-12, maxfun=1e5))",
  lmer_control = "lmerControl(optimizer='bobyqa', optCtrl=list(rhoend=1e-12, maxfun=1e5)), REML=FALSE"
)
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), out_json)
cat("wrote", out_json, "\n")
