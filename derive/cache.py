"""Derivations kept on disk between processes.

Each derivation is stored under a key made of the sources it was derived from (its own module,
the derivation modules it imports, directly or not, and every shared module of derive/), and
of the versions of Python, SymPy, mpmath and NumPy. Editing one derivation so re-derives only it
and the derivations that import it; editing a shared module re-derives everything.

The cache lives in ``$SOFTCE_CACHE_DIR``, else ``$XDG_CACHE_HOME/softce``, else
``~/.cache/softce``; ``SOFTCE_DERIVATION_CACHE=0`` (or ``disabled()``) turns it off. Entries
are written to a temporary file and renamed into place, so concurrent processes never see half
an entry; an entry that cannot be read is derived again, and a directory that cannot be written
caches nothing. Only proved derivations whose pickled form reads back equal are stored.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import pickle
import platform
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp

from .core import VERDICTS, Derivation, expr_hash

#: The directory of derive/'s modules.
PACKAGE = Path(__file__).resolve().parent
#: Modules that only index the derivations: no derivation depends on their text.
INDEX = frozenset({"__init__", "registry"})
DIR_VARIABLE = "SOFTCE_CACHE_DIR"
SWITCH_VARIABLE = "SOFTCE_DERIVATION_CACHE"

_disabled_here = 0


def directory() -> Path:
    """Where the derivations are kept (the cache's own directory, under the softce one)."""
    root = os.environ.get(DIR_VARIABLE)
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "softce"
    return Path(root) / "derivations"


def enabled() -> bool:
    """Whether derivations are read from and written to the cache."""
    return not _disabled_here and os.environ.get(SWITCH_VARIABLE, "1") != "0"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block, neither read nor write the cache."""
    global _disabled_here
    _disabled_here += 1
    try:
        yield
    finally:
        _disabled_here -= 1


def source(module: str) -> bytes:
    """The text of derive's module ``module`` (a name such as "d02_shift")."""
    return (PACKAGE / f"{module}.py").read_bytes()


def imports(module: str) -> set[str]:
    """The modules of derive/ that ``module`` imports anywhere in its text."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source(module))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
        elif node.level == 0 and (node.module or "").startswith("softce.derive."):
            names = [node.module.removeprefix("softce.derive.")]
        else:
            continue
        found |= {name.split(".")[0] for name in names}
    return found


def dependencies(module: str, derivation_modules: Collection[str]) -> set[str]:
    """The modules a derivation in ``module`` is derived from: itself, the derivation modules it
    imports (directly or through one another) and every shared module of derive/."""
    shared = {path.stem for path in PACKAGE.glob("*.py")} - set(derivation_modules) - INDEX
    closure, todo = {module}, [module]
    while todo:
        for name in imports(todo.pop()) & set(derivation_modules) - closure:
            closure.add(name)
            todo.append(name)
    return closure | shared


def key(module: str, derivation_modules: Collection[str]) -> str:
    """The hash of everything a derivation in ``module`` depends on."""
    digest = hashlib.sha256()
    versions = (f"{platform.python_implementation()} {platform.python_version()}",
                f"sympy {sp.__version__}", f"mpmath {mpmath.__version__}",
                f"numpy {np.__version__}")
    digest.update("\n".join(versions).encode())
    for name in sorted(dependencies(module, derivation_modules)):
        digest.update(f"\n{name} ".encode() + hashlib.sha256(source(name)).digest())
    return digest.hexdigest()[:32]


def entry(id: str, key: str) -> Path:
    """The file that holds derivation ``id`` under ``key``."""
    return directory() / f"{id}-{key}.pickle"


def fingerprint(d: Derivation) -> tuple[object, ...]:
    """Everything a consumer reads from a derivation, its results by their expression hashes."""
    return (d.id, d.title, d.seed_formula, d.steps, d.checks, d.seconds,
            [(name, expr_hash(expr)) for name, expr in d.results.items()])


def load(id: str, key: str) -> Derivation | None:
    """Derivation ``id`` stored under ``key``, or None if absent or unreadable."""
    try:
        with entry(id, key).open("rb") as f:
            d = pickle.load(f)
    except Exception:  # missing, unreadable or corrupted: derive it again
        return None
    return d if isinstance(d, Derivation) and d.id == id else None


def store(id: str, key: str, d: Derivation) -> bool:
    """Keep a proved derivation under ``key``; False if it was not stored (not proved, not
    picklable without loss, or the directory not writable)."""
    if d.verdict != VERDICTS[0]:
        return False
    try:
        data = pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)
        if fingerprint(pickle.loads(data)) != fingerprint(d):
            return False
    except (pickle.PickleError, TypeError, AttributeError):
        return False
    path = entry(id, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def cached(id: str, module: str, derivation_modules: Collection[str],
           derive: Callable[[], Derivation]) -> Derivation:
    """Derivation ``id`` (defined in ``module``) as the cache holds it under its current key,
    else ``derive()``, which is then stored; just ``derive()`` when the cache is off or a
    source cannot be read."""
    if not enabled():
        return derive()
    try:
        k = key(module, derivation_modules)
    except (OSError, SyntaxError):
        return derive()
    d = load(id, k)
    if d is None:
        d = derive()
        store(id, k, d)
    return d
