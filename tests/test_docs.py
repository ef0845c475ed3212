"""The documentation runs: every ```python block of README.md and docs/*.md, with its shown output.

Conventions (also stated for writers in docs/index.md, "Writing these pages"):

* A fenced block opened by ```python is run. The blocks of one page run in order, in one namespace,
  so a later block uses the names of an earlier one. Each page runs in its own temporary working
  directory in which ``tests/reference/data`` links to the repository's, so the relative paths the
  pages use work; matplotlib uses the Agg backend and NumPy's global seed is fixed (the examples pass
  their own ``rng`` seeds).
* What a block prints (its stdout, nothing else: a bare expression on the last line is not echoed)
  is compared with the fenced block that directly follows it (only blank lines between), opened by
  ``` or ```text. A block with no such output block is only run.
* The comparison is "to the digits shown": both texts are cut into tokens at whitespace and at
  numbers; text tokens must be equal (whitespace and alignment are ignored) and each shown number
  must equal the printed one to the decimals shown (``1.9527e-12``: 4 decimals of the mantissa;
  ``-0`` equals ``0``; a ``%`` must be on both), within one unit of the last digit shown: a
  printed value is itself rounded, and one that sits on a rounding boundary (``-0.00947925``) lands
  on either side with another BLAS or PyMC build. Any larger drift fails.
* ```python signature marks a signature listing (not valid Python): it is not run, but every
  ``name(params)`` in it (and every ``name(params)`` of the API reference's method table) must have
  the parameter names, kinds and defaults of the code's signature.
* ```python slow marks a block that takes too long for CI (NUTS fits). It runs only with
  ``PPL_GLMM_DOCS_SLOW=1`` (``nox -s docs_slow``); every other block, and so every block of
  README.md, runs in CI. A quick block must not use names that only a slow block defines.

``python tests/test_docs.py docs/getting-started.md`` prints what each block of a page prints now
(slow blocks too); with ``--write`` it also pastes that into the output blocks, after a change that
moves the numbers (review the diff: only paste what the current code prints).

The second part checks that the timings quoted in README.md and docs/ are those of the committed
benchmark results in ``benchmarks/results/*.json``, to the digits shown.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SLOW_ENABLED = os.environ.get("PPL_GLMM_DOCS_SLOW", "") not in ("", "0")
OUTPUT_INFOS = {"", "text"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    info: list[str]
    source: str
    expected: str | None = None  # the output block that follows, if any

    @property
    def flags(self) -> set[str]:
        return set(self.info[1:])

    @property
    def runnable(self) -> bool:
        return "signature" not in self.flags

    @property
    def slow(self) -> bool:
        return "slow" in self.flags

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[tuple[int, int, list[str], str]]:
    """(first line, last line, info words, body) of every fenced block, indentation removed."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and set(lines[j].strip()) == {"`"}):
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]]
        out.append((i + 1, j + 1, m["info"].strip().split(), "\n".join(body) + "\n"))
        i = j + 1
    return out


def python_blocks(page: Path) -> list[Block]:
    raw = fenced_blocks(page)
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for k, (start, end, info, body) in enumerate(raw):
        if not info or info[0] != "python":
            continue
        block = Block(page, start, info, body)
        if k + 1 < len(raw):
            nstart, _, ninfo, nbody = raw[k + 1]
            between = lines[end : nstart - 1]
            if all(not ln.strip() for ln in between) and " ".join(ninfo) in OUTPUT_INFOS:
                block.expected = nbody
        blocks.append(block)
    return blocks


# ---------------------------------------------------------------- comparison to the digits shown

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?%?")


def tokens(text: str) -> list[tuple[str, str]]:
    """('n', number) and ('t', text) tokens; whitespace only separates."""
    out = []
    for word in text.split():
        pos = 0
        for m in _NUMBER.finditer(word):
            if m.start() > pos:
                out.append(("t", word[pos : m.start()]))
            out.append(("n", m.group()))
            pos = m.end()
        if pos < len(word):
            out.append(("t", word[pos:]))
    return out


def number_matches(shown: str, printed: str) -> bool:
    """``printed`` rounded to the decimals of ``shown`` (mantissa decimals in e-notation) is ``shown``."""
    if shown.endswith("%") != printed.endswith("%"):
        return False
    shown, printed = shown.rstrip("%"), printed.rstrip("%")
    mantissa, _, exp = shown.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = Decimal(10) ** (int(exp or 0) - decimals)
    # one unit: the printed value is itself rounded and may sit on a rounding boundary
    return abs(Decimal(printed) - Decimal(shown)) <= unit * (1 + Decimal("1e-12"))


def mismatch(shown: str, printed: str) -> str | None:
    """None if ``printed`` shows ``shown`` to the digits shown, else a description of the first difference."""
    a, b = tokens(shown), tokens(printed)
    for k, (x, y) in enumerate(zip(a, b)):
        same = x == y if x[0] != "n" or y[0] != "n" else number_matches(x[1], y[1])
        if not same:
            return f"token {k}: shown {x[1]!r}, printed {y[1]!r}"
    if len(a) != len(b):
        extra = a[len(b) :] if len(a) > len(b) else b[len(a) :]
        side = "shown" if len(a) > len(b) else "printed"
        return f"{side} has {abs(len(a) - len(b))} more tokens, from {extra[0][1]!r}"
    return None


def test_comparison_rules():
    assert mismatch("0.35386 1.9527e-12 -0.0094793", "0.353858  1.95274e-12 -0.00947931") is None
    assert mismatch("0.35386", "0.35387") is None  # one unit: a value on a rounding boundary
    assert mismatch("0.35386", "0.35388") is not None  # a drifted last digit
    assert mismatch("1.9527e-12", "1.9529e-12") is not None
    assert mismatch("-0.00 12.5%", "0.001 12.54%") is None
    assert mismatch("12.5%", "12.5") is not None
    assert mismatch("(97, 2, 1)", "(97,  2, 1)") is None
    assert mismatch("supplier_C 1", "supplier_B 1") is not None
    assert mismatch("a b", "a b c") is not None


# ---------------------------------------------------------------- running the blocks


class PageRun:
    """One page's namespace and working directory; runs its blocks in order."""

    def __init__(self, page: Path, workdir: Path):
        self.page = page
        self.workdir = workdir
        data = workdir / "tests" / "reference"
        data.mkdir(parents=True, exist_ok=True)
        link = data / "data"
        if not link.exists():
            link.symlink_to(ROOT / "tests" / "reference" / "data", target_is_directory=True)
        self.namespace: dict = {"__name__": "__docs__"}
        self.done: set[int] = set()

    def run(self, block: Block) -> str:
        """Run ``block`` (after any earlier block not run yet) and return what it printed."""
        for earlier in python_blocks(self.page):
            if earlier.line >= block.line:
                break
            if earlier.line not in self.done and earlier.runnable and (SLOW_ENABLED or not earlier.slow):
                self._exec(earlier)
        return self._exec(block)

    def _exec(self, block: Block) -> str:
        import numpy as np

        self.done.add(block.line)
        np.random.seed(0)
        code = compile(block.source, block.id, "exec")
        buf = io.StringIO()
        with contextlib.chdir(self.workdir), contextlib.redirect_stdout(buf):
            exec(code, self.namespace)
        return buf.getvalue()


_RUNS: dict[Path, PageRun] = {}


@pytest.fixture(scope="session")
def page_run(tmp_path_factory):
    os.environ.setdefault("MPLBACKEND", "Agg")

    def get(page: Path) -> PageRun:
        if page not in _RUNS:
            _RUNS[page] = PageRun(page, tmp_path_factory.mktemp(page.stem))
        return _RUNS[page]

    return get


def _params():
    for page in PAGES:
        for block in python_blocks(page):
            marks = [pytest.mark.slow] if block.slow else []
            yield pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", list(_params()))
def test_block(block: Block, page_run):
    if not block.runnable:
        pytest.skip("signature listing")
    if block.slow and not SLOW_ENABLED:
        pytest.skip("slow block: set PPL_GLMM_DOCS_SLOW=1 (nox -s docs_slow)")
    try:
        printed = page_run(block.page).run(block)
    except NameError as exc:
        pytest.fail(f"{block.id}: {exc} (an import missing, or a name that only a skipped block defines)")
    if block.expected is not None:
        problem = mismatch(block.expected, printed)
        assert problem is None, (
            f"{block.id}: {problem}\n--- shown\n{block.expected}--- printed\n{printed}"
            f"(if the new output is right: python tests/test_docs.py --write {block.page.relative_to(ROOT)})"
        )


def test_every_page_has_runnable_blocks():
    """The collector finds the blocks (a broken fence would silently drop a page's checks)."""
    counts = {p.name: sum(b.runnable for b in python_blocks(p)) for p in PAGES}
    assert counts["README.md"] >= 2 and counts["getting-started.md"] >= 10, counts


# ---------------------------------------------------------------- signature listings


def _documented_calls(text: str) -> list[tuple[str, str]]:
    """(dotted name, parameter list) of every ``name(params)`` that starts a line of a listing."""
    out = []
    for m in re.finditer(r"^([A-Za-z_][\w.]*)\(", text, flags=re.M):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append((m[1], text[m.end() : i - 1]))
    return out


def _resolve(name: str):
    import ppl_glmm
    import ppl_glmm.datasets
    from ppl_glmm.model import GeneralizedLinearMixedModel

    head, _, rest = name.partition(".")
    obj = {"ppl_glmm": ppl_glmm, "glme": GeneralizedLinearMixedModel}[head]
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def signature_mismatch(obj, params: str) -> str | None:
    """None if the documented parameter list has the names, kinds and defaults of ``obj``'s."""
    import ast
    import inspect

    tree = ast.parse(f"def _f({params}): ...")
    args = tree.body[0].args
    documented = []
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    documented += [(a.arg, "POSITIONAL_OR_KEYWORD", d) for a, d in zip(positional, defaults)]
    if args.vararg:
        documented.append((args.vararg.arg, "VAR_POSITIONAL", None))
    documented += [(a.arg, "KEYWORD_ONLY", d) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        documented.append((args.kwarg.arg, "VAR_KEYWORD", None))
    actual = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]
    names = [d[0] for d in documented]
    if names != [p.name for p in actual]:
        return f"parameters {names}, code has {[p.name for p in actual]}"
    for (name, kind, default), p in zip(documented, actual):
        if kind != p.kind.name:
            return f"{name}: documented {kind}, code {p.kind.name}"
        has_default = p.default is not inspect.Parameter.empty
        if (default is not None) != has_default:
            return f"{name}: documented {'with' if default is not None else 'without'} a default"
        if default is not None and ast.literal_eval(default) != p.default:
            return f"{name}: documented default {ast.unparse(default)}, code {p.default!r}"
    return None


def _signature_listings():
    for page in PAGES:
        for block in python_blocks(page):
            if "signature" in block.flags:
                for name, params in _documented_calls(block.source):
                    yield pytest.param(name, params, id=f"{block.id}:{name}")
    # the method table of the API reference: | `name(params)` | ...
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    methods = api.split("### Methods", 1)[1].split("\n## ", 1)[0]
    for m in re.finditer(r"^\| `(\w+)\((.*?)\)` \|", methods, flags=re.M):
        if m[1] not in ("str", "repr"):
            yield pytest.param(f"glme.{m[1]}", m[2], id=f"docs/api.md:Methods:{m[1]}")


@pytest.mark.parametrize(("name", "params"), list(_signature_listings()))
def test_signature_listing_matches_the_code(name, params):
    problem = signature_mismatch(_resolve(name), params)
    assert problem is None, f"{name}: {problem}"


# ---------------------------------------------------------------- quoted benchmark figures

RESULTS = ROOT / "benchmarks" / "results"


def _numbers(text: str) -> list[str]:
    return [v for kind, v in tokens(text) if kind == "n"]


def _table_row(page: Path, label: str) -> str:
    rows = [ln for ln in page.read_text(encoding="utf-8").splitlines() if ln.startswith(f"| {label} |")]
    assert len(rows) == 1, f"{page.name}: expected one table row starting with {label!r}, found {len(rows)}"
    return rows[0][len(f"| {label} |") :]


def _check(quoted: list[str], values: list[float], where: str) -> None:
    assert len(quoted) == len(values), f"{where}: quotes {quoted}, results have {len(values)} values"
    for q, v in zip(quoted, values):
        assert number_matches(q, repr(float(v))), f"{where}: quotes {q}, the results file has {v:.6g}"


def test_readme_mfr_speed_table_is_latest_json():
    r = json.loads((RESULTS / "latest.json").read_text())
    py, lme4, ratio = r["ppl_glmm"], r["lme4"], r["ratios"]
    rows = {
        "`refit(ynew)` vs `lme4::refit`": ("refit", "refit"),
        "fit in a warm process (compiled functions loaded) vs `glmer`": ("fit_warm", "glmer_fit"),
        "first fit in a new process (after `import ppl_glmm, pymc`; disk caches warm) vs `glmer`": (
            "fit_first_in_process",
            "glmer_fit",
        ),
        "`random()` vs `simulate()`": ("random", "simulate"),
    }
    # the repetitions the header states are those of the rows
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    m = re.search(
        r"medians over (\d+) repetitions, except the first-fit row: median of (\d+) new processes", text
    )
    assert m, "README.md: the mfr speed table's header no longer states the repetitions"
    assert {py[k]["reps"] for k in ("refit", "fit_warm", "random")} | {
        v["reps"] for v in lme4.values() if isinstance(v, dict)
    } == {int(m[1])}
    assert py["fit_first_in_process"]["reps"] == int(m[2])
    for label, (ours, theirs) in rows.items():
        _check(
            _numbers(_table_row(ROOT / "README.md", label)),
            [py[ours]["median"], lme4[theirs]["median"], ratio[ours]],
            f"README.md row {label!r}",
        )


def test_readme_families_table_is_families_json():
    r = json.loads((RESULTS / "families.json").read_text())
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    for row in r["rows"]:
        label = f"| `{row['case']}` | `{row['r_case']}` |"
        found = [ln for ln in lines if ln.startswith(label)]
        assert len(found) == 1, f"README.md: expected one row {label!r}, found {len(found)}"
        _check(
            _numbers(found[0][len(label) :]),
            [row["ppl_glmm"], row["r"], row["ratio"], row["core_ratio"], row["relative"]],
            f"README.md families row {label}",
        )
    text = " ".join("\n".join(lines).split())
    m = re.search(r"the median of the blocks' core ratios was (\d+(?:\.\d+)?)", text)
    assert m, "README.md: the families table no longer states the core ratio of its run"
    _check([m[1]], [r["core_ratio"]], "README.md families core ratio")


def test_first_fit_timings_in_prose_are_latest_json():
    r = json.loads((RESULTS / "latest.json").read_text())["ppl_glmm"]
    first, warm = r["fit_first_in_process"], r["fit_warm"]
    gs = " ".join((ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8").split())
    m = re.search(
        r"took ([\d.]+) s as the first fit in a new process \(median of (\d+) processes\) and "
        r"([\d.]+) s in a process that had already fitted a Poisson model \(median of (\d+)\)",
        gs,
    )
    assert m, "docs/getting-started.md: the first-fit sentence changed; keep it checked"
    _check([m[1], m[3]], [first["median"], warm["median"]], "getting-started.md first/warm fit")
    assert (int(m[2]), int(m[4])) == (first["reps"], warm["reps"])
    alg = " ".join((ROOT / "docs" / "algorithms.md").read_text(encoding="utf-8").split())
    m = re.search(
        r"new process \(([\d.]+) s, the median of (\d+) new processes in `benchmarks/results/latest.json`\)",
        alg,
    )
    assert m, "docs/algorithms.md: the first-fit figure changed; keep it checked"
    _check([m[1]], [first["median"]], "algorithms.md first fit")
    assert int(m[2]) == first["reps"]


def test_init_pl_table_is_pl_reml_json():
    """algorithms.md's init_pl_iterations table (BFGS iterations, inner-mode evaluations and times
    for 0 / 3 / 10 PL iterations) is benchmarks/results/pl_reml.json's."""
    r = json.loads((RESULTS / "pl_reml.json").read_text())
    rows: dict = {}
    for row in r["init_pl"]:
        rows.setdefault(row["case"], {})[row["init_pl_iterations"]] = row
    for case, by_k in rows.items():
        values = [by_k[k]["bfgs_iterations"] for k in (0, 3, 10)]
        values += [by_k[k]["inner_evaluations_total"] for k in (0, 3, 10)]
        values += [1e3 * by_k[k]["seconds"] for k in (0, 3, 10)]
        quoted = _numbers(_table_row(ROOT / "docs" / "algorithms.md", f"`{case}`"))
        _check(quoted, values, f"algorithms.md init_pl row {case}")


def test_readme_large_data_figures_are_large_json():
    r = json.loads((RESULTS / "large.json").read_text())
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for formula, shown in [
        ("y ~ x + (1|g)", "`(1|g)`"),
        ("y ~ x + (1|g) + (1|h)", "`(1|g) + (1|h)`"),
        ("y ~ x + (1 + x|g)", "`(1 + x|g)`"),
    ]:
        m = re.search(re.escape(shown) + r" ([\d.]+) s vs ([\d.]+) s", text)
        assert m, f"README.md: no '{shown} <s> s vs <s> s' quote"
        _check([m[1], m[2]], [r["ppl_glmm"][formula]["seconds"], r["lme4"][formula]["seconds"]], shown)
        assert abs(r["ppl_glmm"][formula]["logLik"] - r["lme4"][formula]["logLik"]) < 1e-4  # "equal to 1e-4"
    assert "log-likelihoods equal to 1e-4" in text
    reps = {row["reps"] for side in ("ppl_glmm", "lme4") for row in r[side].values()}
    assert reps == {1} or "one run of each fit" not in text, "README says single runs; large.json has medians"
    assert reps != {1} or "one run of each fit" in text, "large.json has single runs; say so in README.md"


def test_startup_figures_are_startup_json():
    """README.md's whole-process table and docs/algorithms.md's first-call tables and the ratios
    they state are benchmarks/results/startup.json's."""
    r = json.loads((RESULTS / "startup.json").read_text())
    whole, ratio, first = r["whole_process"], r["seed_python_over_rscript"], r["first_call"]
    readme, alg = ROOT / "README.md", ROOT / "docs" / "algorithms.md"
    rows = {
        "`python -c 'import ppl_glmm'`": ["python -c 'import ppl_glmm'"],
        "`python seed.py`: `import ppl_glmm`, `load_mfr()`, `fitglme`": [
            "python seed.py (import ppl_glmm, fit the seed model)"
        ],
        "`python seed.py`, PyTensor's caches holding only the seed's functions": [
            "python seed.py, PyTensor caches holding only the seed's functions"
        ],
        "`Rscript seed.R`: `library(lme4)`, `read.csv`, `glmer`": [
            "Rscript seed.R (library(lme4), read.csv, glmer)"
        ],
        "`python -c pass`, `Rscript -e 'invisible(NULL)'` (interpreters alone)": [
            "python -c pass",
            "Rscript -e 'invisible(NULL)'",
        ],
    }
    for label, keys in rows.items():
        values = [whole[k][m]["median"] for m in ("wall", "cpu") for k in keys]
        _check(_numbers(_table_row(readme, label)), values, f"README.md start-up row {label!r}")
    text = " ".join(readme.read_text(encoding="utf-8").split())
    own = r["seed_python_own_cache_over_rscript"]
    m = re.search(
        r"The seed script takes ([\d.]+)x Rscript's wall time in this run with this machine's PyTensor "
        r"cache \((\d+) compiled modules\), and ([\d.]+)x with PyTensor's caches holding only its own",
        text,
    )
    assert m, "README.md: the start-up ratio sentence changed; keep it checked"
    _check([m[1], m[3]], [ratio["wall"], own["wall"]], "README.md start-up ratios")
    assert int(m[2]) == r["pytensor_c_cache_modules"], "README.md: the number of cached C modules"
    met = list(r["target_met"].values())
    assert met == [ratio["wall"] <= 1.0, own["wall"] <= 1.0]
    verdict = {
        (True, True): "is met",
        (True, False): "is met with this machine's cache, not with the seed's own",
        (False, True): "is met for",
        (False, False): "is not met",
    }
    verdict_text = f"the start-up target (no slower than Rscript) {verdict[tuple(met)]}"
    assert verdict_text in text, "README.md: the verdict sentence is not the results file's"
    # the round-by-round ratios: recomputed from the whole-process times, and README.md's reading
    # of their interval (reliably below Rscript only when the interval lies below 1)
    paired = r["paired_wall_ratios"]["seed"]
    a = whole["python seed.py (import ppl_glmm, fit the seed model)"]["wall"]["values"]
    b = whole["Rscript seed.R (library(lme4), read.csv, glmer)"]["wall"]["values"]
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    assert abs(paired["median"] - statistics.median(ratios)) < 1e-3
    m = re.search(
        r"Round by round \(the commands run interleaved\), the seed script's wall time is a median "
        r"([\d.]+)x Rscript's, with a (\d+)% interval of ([\d.]+)x to ([\d.]+)x",
        text,
    )
    assert m, "README.md: the paired-ratio sentence changed; keep it checked"
    _check([m[1], m[3], m[4]], [paired["median"], *paired["interval"]], "README.md paired ratios")
    assert int(m[2]) == round(100 * paired["coverage"])
    below = paired["interval"][1] < 1.0
    reading = "reliably below Rscript" if below else "at parity with Rscript, not reliably below it"
    assert f"start-up is {reading}" in text, "README.md: the reading of the interval is not the file's"
    assert f"medians of {r['reps']} new processes of each command" in text
    backends = ("default", "default_own_cache", "numba")
    for name in first["default"]["pieces"]:
        label = name.split(": ")[0]
        values = [
            next(v for k, v in first[b]["pieces"].items() if k.split(": ")[0] == label)["wall"]
            for b in backends
        ]
        _check(_numbers(_table_row(alg, label)), values, f"algorithms.md start-up row {label!r}")
    for n in first["default"]["per_call_seconds_by_n"]:
        label = f"one call of the compiled function, {int(n):,} rows"
        values = [1e3 * first[b]["per_call_seconds_by_n"][n] for b in backends]
        _check(_numbers(_table_row(alg, label)), values, f"algorithms.md {label!r} (ms)")
    for label, row in r["first_call_r"].items():
        _check(_numbers(_table_row(alg, label)), [row["wall"]], f"algorithms.md R row {label!r}")
    text = " ".join(alg.read_text(encoding="utf-8").split())
    m = re.search(
        r"in this run the seed script takes ([\d.]+)x Rscript's wall time and ([\d.]+)x its CPU", text
    )
    assert m, "docs/algorithms.md: the start-up ratio sentence changed; keep it checked"
    _check([m[1], m[2]], [ratio["wall"], ratio["cpu"]], "algorithms.md start-up ratios")
    assert f"in new processes (median of {r['reps']};" in text


def test_bayes_tables_are_bayes_json():
    import importlib.util

    saved = list(sys.path)  # benchmarks/bayes.py puts benchmarks/ on sys.path (for _meta): undo that
    try:
        spec = importlib.util.spec_from_file_location("_bench_bayes", ROOT / "benchmarks" / "bayes.py")
        bench_bayes = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench_bayes)
    finally:
        sys.path[:] = saved
    r = json.loads((RESULTS / "bayes.json").read_text())
    page = (ROOT / "docs" / "bayes.md").read_text(encoding="utf-8")
    for line in bench_bayes.markdown_table(r).splitlines():
        assert line in page, (
            f"docs/bayes.md lacks the benchmark table row {line!r} (python benchmarks/bayes.py --table)"
        )
    c4 = r["configs"]["chains_4"]
    warm = [
        ln
        for ln in page.splitlines()
        if ln.startswith("| mfr, Poisson `(1\\|factory)`, `nox -s bench_bayes`")
    ]
    assert len(warm) == 1, "docs/bayes.md: the warm-start table's mfr row is missing"
    cells = [_numbers(cell) for cell in re.split(r"(?<!\\)\|", warm[0])[2:5]]  # "\|" is inside a cell
    for cell, key in zip(cells, ["ppl_glmm_auto", "ppl_glmm_tune1000", "ppl_glmm"]):
        _check(cell, [c4[key]["ess_per_second_median"], c4[key]["seconds_median"]], f"warm-start row, {key}")
    for chains in (2, 4):
        c = r["configs"][f"chains_{chains}"]
        ours, bambi = c["ppl_glmm"], c["bambi"]
        _check(
            _numbers(_table_row(ROOT / "README.md", str(chains))),
            [
                ours["seconds_median"],
                ours["ess_per_second_median"],
                bambi["seconds_median"],
                bambi["ess_per_second_median"],
                ours["ess_per_second_vs_bambi"],
            ],
            f"README.md bayes row, {chains} chains",
        )


def write_outputs(page: Path, printed: dict[int, str]) -> None:
    """Replace the output block after each block in ``printed`` (opening-fence line -> stdout)."""
    lines = page.read_text(encoding="utf-8").split("\n")
    raw = fenced_blocks(page)
    for k in reversed(range(len(raw) - 1)):
        start, end, info, _ = raw[k]
        if start not in printed or not info or info[0] != "python":
            continue
        nstart, nend, ninfo, _ = raw[k + 1]
        if any(ln.strip() for ln in lines[end : nstart - 1]) or " ".join(ninfo) not in OUTPUT_INFOS:
            continue
        indent = _FENCE.match(lines[nstart - 1])["indent"]
        body = [indent + ln if ln else ln for ln in printed[start].rstrip("\n").split("\n")]
        lines[nstart : nend - 1] = body
    page.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    # python tests/test_docs.py [--write] [PAGE ...]: print what each block prints now (slow blocks
    # too); --write also pastes it into the output blocks that follow the blocks (review the diff)
    import tempfile

    os.environ.setdefault("MPLBACKEND", "Agg")
    SLOW_ENABLED = True
    args = sys.argv[1:]
    write = "--write" in args
    args = [a for a in args if a != "--write"]
    for arg in args or [str(p) for p in PAGES]:
        page = Path(arg).resolve()
        printed = {}
        with tempfile.TemporaryDirectory() as tmp:
            run = PageRun(page, Path(tmp))
            for block in python_blocks(page):
                if not block.runnable:
                    continue
                t0 = time.perf_counter()
                out = printed[block.line] = run.run(block)
                print(f"===== {block.id} ({time.perf_counter() - t0:.1f} s){' slow' if block.slow else ''}")
                print(out, end="")
        if write:
            write_outputs(page, {k: v for k, v in printed.items() if v})


def test_readme_scaling_table_is_scaling_json():
    """README.md's scaling table (issue 8's targets and the scaling report) is scaling.json's, row
    by row; the target cases are all there."""
    r = json.loads((RESULTS / "scaling.json").read_text())
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    for case in ("insteval", "insteval_binomial", "nested_poisson", "verbagg", "crossed_n_1M"):
        assert case in r["cases"], case
    for case, row in r["cases"].items():
        label = f"| `{case}` |"
        found = [ln for ln in lines if ln.startswith(label)]
        assert len(found) == 1, f"README.md: expected one scaling row {label!r}, found {len(found)}"
        a, b = row["ppl_glmm"], row["lme4"]
        quoted = _numbers(found[0][len(label) :].replace(",", ""))  # 73,421 -> 73421
        values = [row["rows"], a["seconds"]]
        if "seconds" in b:
            values += [b["seconds"], row["ratio_time"], a["peak_rss_mb"], b["peak_rss_mb"]]
            values += [row["ratio_peak_memory"], row["dlogLik"]]
        else:  # lme4's cell is its error ("did not finish within 10 minutes")
            assert b["error"] in found[0], f"README.md scaling row {case}: lme4's error is not quoted"
            quoted, values = quoted[:2] + quoted[-1:], [*values, a["peak_rss_mb"]]
        _check(quoted, values, f"README.md scaling row {case}")


def test_readme_exact_laplace_table_is_its_json():
    """README.md's exact-Laplace arbitration rows are exact_laplace_check.json's."""
    r = json.loads((RESULTS / "exact_laplace_check.json").read_text())["cases"]
    for case, v in r.items():
        values = [
            v["exact_ours_minus_lme4"],
            v["devfun_ours_minus_lme4"],
            v["lme4_logLik"] - v["exact_at_lme4"],
            v["ppl_glmm_minus_exact_at_ppl_glmm"],
        ]
        assert v["exact_ours_minus_lme4"] > 0, case  # the README says ppl_glmm's optimum is higher
        _check(
            _numbers(_table_row(ROOT / "README.md", f"exact: `{case}`")),
            values,
            f"README.md exact row {case}",
        )
