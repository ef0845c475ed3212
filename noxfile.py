"""nox sessions: tests, props, lint, bench (Python 3.12; the reference values need no R, the bench does)."""

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
PYTHON = "3.12"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs build: make the figures of docs/img (docs/make_figures.py), then run every block of
    README.md and docs/ and check the signature listings and quoted timings (tests/test_docs.py)."""
    session.install("-e", ".[test]")
    session.run("python", "docs/make_figures.py")
    session.run("pytest", "-q", "tests/test_docs.py", *session.posargs)


@nox.session(python=PYTHON)
def docs_slow(session: nox.Session) -> None:
    """Every block of README.md and docs/, the NUTS fits marked ```python slow included (a few minutes)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/test_docs.py", *session.posargs, env={"PPL_GLMM_DOCS_SLOW": "1"})


@nox.session(python=PYTHON)
def props(session: nox.Session) -> None:
    """Property-based tests with many more examples than CI runs (hypothesis profile 'many')."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "-q",
        "tests/test_properties.py",
        "--hypothesis-show-statistics",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "many"},
    )


@nox.session(python=PYTHON)
def grid(session: nox.Session) -> None:
    """Every distribution x link cell of tests/test_support_grid.py (CI runs a subset; ~20 s a cell cold)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/test_support_grid.py", *session.posargs, env={"PPL_GLMM_GRID": "1"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    paths = ("ppl_glmm", "tests", "benchmarks", "examples", "docs/make_figures.py", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """ppl_glmm vs lme4 on this machine (needs Rscript with lme4 and jsonlite); -- --reps N (default 20).

    Then start-up: whole processes (import, the seed script, Rscript with lme4) and each piece's
    first-call cost per PyTensor backend (benchmarks/startup.py, medians of 5 new processes)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/families.py")
    session.run("python", "benchmarks/startup.py")


@nox.session(python=PYTHON)
def bench_large(session: nox.Session) -> None:
    """100k rows x 2,100 levels vs lme4, -- --reps N (default 5: about 10 minutes, most of it lme4)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/large.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_scaling(session: nox.Session) -> None:
    """Time and peak memory vs rows and levels (crossed, nested), InstEval, VerbAgg, against lme4;
    writes benchmarks/results/scaling.json and docs/img/scaling.png. -- --cases ... --reps N (default 3).
    Needs Rscript with lme4; the 1,000,000-row case takes lme4 several minutes."""
    session.install("-e", ".[plot]")
    session.run("python", "benchmarks/scaling.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_bootstrap(session: nox.Session) -> None:
    """1,000 parametric-bootstrap replicates of the mfr model, serial and on 2 loky workers, against
    lme4's bootMer (serial and multicore) in the same run; writes benchmarks/results/bootstrap.json.
    -- --nsim N --workers W --r-ncpus C. Needs Rscript with lme4 (bootMer takes several minutes)."""
    session.install("-e", ".[parallel]")
    session.run("python", "benchmarks/bootstrap.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_bayes(session: nox.Session) -> None:
    """fit_bayes vs bambi 0.21 on the mfr model (bambi pins formulae < 0.7: it gets its own venv)."""
    session.install("-e", ".[nutpie]")
    bambi_env = Path(session.create_tmp()) / "bambi-0.21"
    if not (bambi_env / "bin" / "python").exists():
        session.run("python", "-m", "venv", str(bambi_env))
        session.run(str(bambi_env / "bin" / "pip"), "install", "-q", "bambi==0.21.0", external=True)
    session.run(
        "python", "benchmarks/bayes.py", "--bambi-python", str(bambi_env / "bin" / "python"), *session.posargs
    )


@nox.session(python=PYTHON)
def bench_centering(session: nox.Session) -> None:
    """noncentered='auto' on 8 reference models: rho per term, the pick, and min ESS, ESS/s and
    divergences of the centred and non-centred forms (writes benchmarks/results/centering.json)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/centering.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_inference(session: nox.Session) -> None:
    """Profile intervals, random effects with SEPred and compare vs lme4's confint(method='profile'),
    ranef(condVar=TRUE) and anova (needs Rscript with lme4); -- --reps N (default 5)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/inference.py", *session.posargs)
