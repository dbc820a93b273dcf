"""An unreadable Numba cache is a cache miss, not an import error.

Numba unpickles its cache index (``*.nbi``) and data (``*.nbc``) without a guard: a truncated
or corrupted file (a crash mid-write, a full disk, two versions sharing a directory) raises
UnpicklingError/EOFError from the decorator, so importing a generated kernel module fails.
Installed once, before any kernel module loads: a corrupted index reads as empty (the next
save writes a fresh one), a corrupted entry as missing, and the kernel is compiled again with
a ``NumbaWarning``. An unwritable cache directory needs nothing here: Numba then falls back
to the next cache location, or compiles without caching.
"""

from __future__ import annotations

import warnings

from numba.core import caching
from numba.core.errors import NumbaWarning

_INSTALLED = "_softce_guarded"


def _warn(what: str, path: object, exc: BaseException) -> None:
    warnings.warn(f"ignoring the unreadable Numba cache {what} {path!s} "
                  f"({type(exc).__name__}: {exc}); compiling instead", NumbaWarning,
                  stacklevel=3)


def install() -> None:
    cls = caching.IndexDataCacheFile
    if getattr(cls, _INSTALLED, False):
        return
    load_index, load_data = cls._load_index, cls._load_data

    def _load_index(self):
        try:
            return load_index(self)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a miss
            _warn("index", self._index_path, exc)
            return {}

    def _load_data(self, name):
        try:
            return load_data(self, name)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001
            _warn("entry", self._data_path(name), exc)
            return None

    cls._load_index, cls._load_data = _load_index, _load_data

    load_overload = caching.Cache.load_overload

    def guarded_load_overload(self, sig, target_context):
        try:
            return load_overload(self, sig, target_context)
        except Exception as exc:  # noqa: BLE001 - e.g. a data file that unpickles to junk
            _warn("entry for", getattr(self, "_name", "?"), exc)
            return None

    caching.Cache.load_overload = guarded_load_overload
    setattr(cls, _INSTALLED, True)


install()
