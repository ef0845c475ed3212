"""Which PyTensor backend compiles the engine's observation function, and its start-up costs.

A fit calls its compiled observation function (the model's log-likelihood derivatives, see
:mod:`ppl_glmm.pymc_model`) some hundreds of times. Two backends compete:

========================  ===============================  ================================
                          C (PyTensor mode ``"CVM"``)      Numba (PyTensor's default)
========================  ===============================  ================================
stored function, new      ~0.11 s (reads only its own      ~1.5 s (import Numba, rebuild
process                   modules' keys: c_module_cache)   dispatchers, start its target)
one call, 100 rows        ~26 us                           ~25 us
one call, 100,000 rows    ~22 ms                           ~15 ms
========================  ===============================  ================================

so a fit of up to :data:`C_MAX_POINTS` rows uses the C backend when PyTensor has a C++ compiler,
and larger fits Numba (``benchmarks/startup.py`` measures both). Both compile the same graph.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

__all__ = [
    "COMPILE_LOCK",
    "C_MAX_POINTS",
    "C_MODE",
    "PYMC_CXXFLAGS",
    "c_backend_start",
    "engine_mode",
    "import_pytensor",
    "pymc_cxxflags",
    "write_atomic",
]

C_MODE = "CVM"
C_MAX_POINTS = 1_000
# Held while ppl_glmm compiles or loads any PyTensor function (observation functions, samplers,
# custom links, the Bayesian transforms): PyTensor's compiler swaps the global config.mode with
# change_flags, which is not thread-safe: two samplers compiling at once in two threads left
# config.mode set to a Mode object, and every later fit of the process failed.
COMPILE_LOCK = threading.RLock()
_configured = False  # import_pytensor has run in this process
# What importing PyMC appends to PyTensor's ``gcc__cxxflags`` (``pymc/__init__.py``,
# ``__set_compiler_flags``): see :func:`pymc_cxxflags`.
PYMC_CXXFLAGS = (
    "-Wno-c++11-narrowing",
    "-fno-exceptions",
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
)


def import_pytensor():
    """PyTensor, imported with the garbage collector paused (:mod:`ppl_glmm.gc_pause`), and on the
    first call in a process given a directory for the Python source its Numba backend generates.

    PyTensor writes that source for every Numba function it builds or unpickles; with
    ``generated_src_dir`` empty (its default) each goes to a new file in the system's temporary
    directory that is never removed (four files per new process that fits on Numba, and tens
    of thousands from a test suite). Left empty, it is set to ``<compiledir>/generated_src``:
    content-addressed files, reused, and pruned by PyTensor itself when unused (as its compiled C
    modules). A value the user set, in ``PYTENSOR_FLAGS`` or ``pytensor.config``, is kept."""
    global _configured
    if not _configured:
        from pathlib import Path

        from .gc_pause import gc_paused

        with gc_paused():
            import pytensor
        with COMPILE_LOCK:
            if not _configured:
                config = pytensor.config
                if not config.generated_src_dir:
                    config.generated_src_dir = str(Path(config.compiledir) / "generated_src")
                _configured = True
    import pytensor

    return pytensor


def engine_mode(points: int) -> str | None:
    """The PyTensor mode of the observation function a fit evaluates at ``points`` values per call.

    :data:`C_MODE` up to :data:`C_MAX_POINTS` points when PyTensor has a C++ compiler, else None
    (PyTensor's default: Numba). When PyTensor is configured otherwise (``PYTENSOR_FLAGS`` mode
    or linker), None: that configuration is used for every fit."""
    pytensor = import_pytensor()
    if (str(pytensor.config.mode), str(pytensor.config.linker)) != ("Mode", "auto"):
        return None
    return C_MODE if points <= C_MAX_POINTS and pytensor.config.cxx else None


def pymc_cxxflags() -> None:
    """Give PyTensor's ``gcc__cxxflags`` the flags importing PyMC appends (:data:`PYMC_CXXFLAGS`),
    each once, after the others: the value it has in a process that imported PyMC once.

    Every C module's key holds the compiler flags. A process that compiles an observation function
    has built its PyMC model, so PyMC is imported and its flags are set; one that loads the stored
    function imports no PyMC. Without this their lookups would find different modules (each
    compiling its own the first time), and a process that imports PyMC while loading (a full
    refresh of the module cache unpickles keys naming PyMC classes) would change its flags midway.
    Run before every load or compilation and after every full refresh of the module cache."""
    from pytensor import config

    flags = str(config.gcc__cxxflags)
    canonical = " ".join([*(f for f in flags.split() if f not in PYMC_CXXFLAGS), *PYMC_CXXFLAGS])
    if flags != canonical:
        config.gcc__cxxflags = canonical


def _probe_path():
    """Where this machine's answer to PyTensor's compiler probe is kept: a file named by a hash of
    everything the answer depends on (the CPU, the compiler binary and flags, PyTensor's version);
    None where the CPU cannot be identified (no ``/proc/cpuinfo``)."""
    import hashlib
    import os
    import platform
    import shutil
    from pathlib import Path

    import pytensor
    from pytensor import config

    try:
        cpu = sorted(
            {ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith(_CPU_FIELDS)}
        )
        cxx = os.path.realpath(shutil.which(config.cxx) or config.cxx)
        st = os.stat(cxx)
    except OSError:
        return None
    parts = [pytensor.__version__, config.cxx, cxx, str(st.st_size), str(st.st_mtime_ns)]
    parts += [str(config.gcc__cxxflags), platform.machine(), *cpu]
    name = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]
    return Path(config.compiledir) / "ppl_glmm" / f"march-{name}.json"


_CPU_FIELDS = ("vendor_id", "cpu family", "model\t", "model name", "flags", "stepping")


@contextmanager
def c_backend_start():
    """Answer the C backend's per-process start-up questions quickly, for the block's duration
    (every load or compilation of an observation function: C is also PyTensor's backend when
    configured with ``linker=cvm``).

    * The compiler probe. The C backend compiles, and keys every compiled module, with the
      ``-march``/``-mtune`` flags equivalent to ``-march=native``; PyTensor finds them once per
      process by running ``g++`` three times (~0.5 s; ``GCC_compiler.compile_args``). The flags
      found by an earlier process on the same CPU with the same compiler, flags and PyTensor
      version are restored, and the flags PyTensor finds are kept for later processes: the probe
      runs once per machine. Nothing is kept where the CPU cannot be identified.
    * The extension suffix. Loading a compiled module asks for ``EXT_SUFFIX`` through setuptools'
      copy of distutils (importing setuptools: ~0.3 s); the standard library's ``sysconfig``
      answers the same value (CPython's build configuration) without it.

    The answers are exactly PyTensor's own; only the time to reach them changes.
    """
    import json

    from pytensor.link.c import cmodule
    from pytensor.link.c.cmodule import GCC_compiler

    with COMPILE_LOCK:
        pymc_cxxflags()
        path = _probe_path() if GCC_compiler.march_flags is None else None
        if path is not None:
            try:
                flags = json.loads(path.read_text())
                if isinstance(flags, list) and all(isinstance(f, str) for f in flags):
                    GCC_compiler.march_flags = flags
                    path = None
            except (OSError, ValueError):
                pass
        original = cmodule._get_ext_suffix
        cmodule._get_ext_suffix = _std_ext_suffix
        try:
            yield
        finally:
            cmodule._get_ext_suffix = original
            flags = GCC_compiler.march_flags
            if path is not None and isinstance(flags, list):
                write_atomic(path, json.dumps(flags))


def _std_ext_suffix():
    import sysconfig

    return sysconfig.get_config_var("EXT_SUFFIX")


def write_atomic(path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a concurrent process
    never reads a partial file. Failures are ignored (what is written are caches)."""
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)  # atomic: a concurrent process never reads a partial file
    except OSError:  # an optimisation only (read-only disk...)
        pass
