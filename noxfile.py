"""nox sessions: tests, lint, bench (Python 3.12; the reference values need no R, the benchmark does)."""

import nox

nox.options.sessions = ["tests", "lint"]
PYTHON = "3.12"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "ppl_glmm", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "ppl_glmm", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """ppl_glmm vs lme4 on this machine (needs Rscript with lme4 and jsonlite)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_large(session: nox.Session) -> None:
    """100k rows x 2,100 levels vs lme4 (a few minutes, most of it lme4)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/large.py", *session.posargs)
