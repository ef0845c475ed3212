"""PyTensor's C module cache, started with only the modules a stored function needs.

PyTensor's C backend keeps each compiled module in a directory of its compile directory, with a
pickled key (``key.pkl``). A process's first C function starts PyTensor's ``ModuleCache``, which
unpickles the key of *every* module there (~5 ms each): the directory grows with every distinct
graph ever compiled on the machine, so a new process's first fit would slow down as the machine
is used. A stored observation function records the directories of the modules it uses
(:func:`recording`); :func:`preload` starts the process's cache holding those keys only.

Nothing else changes. Any other lookup that misses refreshes the whole cache under PyTensor's
compile lock before compiling, exactly as when another process has compiled a module since this
one started (PyTensor's ``ModuleCache.module_from_key``): no module is ever compiled twice. A
process that never refreshed skips PyTensor's exit-time ``clear_old`` (it would unpickle every
key to delete modules unused for over a month); any process that compiles does it.
"""

from __future__ import annotations

import atexit
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pytensor import config
from pytensor.link.c import cmodule

from .backend import pymc_cxxflags

__all__ = ["TargetedModuleCache", "preload", "recording"]


class TargetedModuleCache(cmodule.ModuleCache):
    """A ``ModuleCache`` that starts with the keys of named modules only (see the module's doc).

    ``complete`` is False until PyTensor's own ``refresh`` has walked the whole directory."""

    complete = False

    def __init__(self, dirname, names: Sequence[str]):
        super().__init__(dirname, do_refresh=False)
        for name in names:
            self._add_module(os.path.join(self.dirname, os.path.basename(name)))

    def _add_module(self, root: str) -> None:
        """``refresh``'s handling of one module directory, for a usable module only: anything
        else is left to a later full refresh."""
        key_pkl = os.path.join(root, "key.pkl")
        try:
            entry = cmodule.module_name_from_dir(root)
            if time.time() - cmodule.last_access_time(entry) >= self.age_thresh_use:
                return  # too old to use: PyTensor would not use it either
            with open(key_pkl, "rb") as fh:
                key_data = pickle.load(fh)
        except Exception:  # missing, partial, several modules, or keys of unloaded classes
            return
        if (
            not isinstance(key_data, cmodule.KeyData)
            or not cmodule.is_same_entry(entry, key_data.get_entry())
            or not key_data.keys
            or not all(key[0] for key in key_data.keys)  # unversioned keys are never shared
            or key_data.module_hash in self.module_hash_to_key_data
            or any(key in self.entry_from_key for key in key_data.keys)
        ):
            return
        key_data.entry, key_data.key_pkl = entry, key_pkl
        self.module_hash_to_key_data[key_data.module_hash] = key_data
        for key in key_data.keys:
            self.entry_from_key[key] = entry
            self.similar_keys.setdefault(cmodule.get_safe_part(key), []).append(key)
        self.loaded_key_pkl.add(key_pkl)

    def refresh(self, *args, **kwargs):
        out = super().refresh(*args, **kwargs)
        self.complete = True
        pymc_cxxflags()  # unpickling the other keys may have imported PyMC, which appends its flags
        return out

    def _on_atexit(self) -> None:
        if self.complete:  # the full walk is already paid: clear_old's refresh is incremental
            super()._on_atexit()
        else:
            self.clear_unversioned()


def preload(names: Sequence[str]) -> bool:
    """Start this process's module cache holding only the keys of the modules in the directories
    ``names``, if the process has none yet; True when it did. Call under the backend's lock."""
    if cmodule._module_cache is not None or not names:
        return False
    cache = TargetedModuleCache(config.compiledir, names)
    cmodule._module_cache = cache
    atexit.register(cache._on_atexit)
    return True


@contextmanager
def recording() -> Iterator[set[str]]:
    """The names of the module directories the C backend looks up while the block runs (those
    loaded or compiled for the functions made in it). Call under the backend's lock."""
    from pytensor.link.c.basic import get_module_cache

    names: set[str] = set()
    cache = get_module_cache()
    lookup, outer = cache.module_from_key, cache.__dict__.get("module_from_key")

    def module_from_key(key, lnk):
        module = lookup(key, lnk)
        names.add(os.path.basename(os.path.dirname(module.__file__)))
        return module

    cache.module_from_key = module_from_key
    try:
        yield names
    finally:
        if outer is None:
            del cache.module_from_key
        else:  # a recording block inside another: the outer one records on
            cache.module_from_key = outer
