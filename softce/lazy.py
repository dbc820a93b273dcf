"""Declared signatures compiled on first use, not at import.

``@nb.njit([sig, ...])`` compiles every listed signature when the module is imported: a kernel
module with float32 and float64 variants and two label types is four compilations (seconds
each with an empty Numba cache, and a load from the cache each when warm) before its first
call. Generated CPU kernels are declared with ``_target="softce_cpu"`` (in ``CPU_OPTIONS``),
which gives them a ``LazyDispatcher``: the decorator's signatures are recorded, and a call
compiles (or loads from the on-disk cache) only the declared signature its arguments have.
Once every declared signature is compiled, compilation is disabled, as after an eager
``@njit([...])``; a call whose argument types are none of the declared ones compiles the rest
and is then resolved exactly as there (Numba's conversions, else TypeError): the kernels
accept what they accepted, and nothing else.

``compile_declared(dispatcher)`` compiles a kernel's remaining signatures (``softce warmup``).
A dispatcher made with these options and no signatures is an ordinary one. (Should Numba stop
registering a dispatcher while its decorator compiles the signatures, every signature would
be compiled at import again, as before: slower, never wrong.)
"""

from __future__ import annotations

from numba.core import sigutils, typeinfer, typing
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher
from numba.core.target_extension import CPU, dispatcher_registry, target_registry

#: The ``_target`` option of ``numba.njit`` that makes a ``LazyDispatcher``.
TARGET = "softce_cpu"


class LazyDispatcher(CPUDispatcher):
    """A CPU dispatcher whose declared signatures compile one by one, on first use."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._declaring = True  # until the decorator's compile(sig) calls end
        self.declared_signatures: list[tuple] = []  # argument types, in declared order

    # -- the decorator: ``for sig in sigs: disp.compile(sig)``, then ``disable_compile()`` --

    def compile(self, sig):
        if self._declaring and typeinfer._temporary_dispatcher_map.get(
                self.py_func.__name__) is self:  # inside @njit([...])'s loop over its sigs
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) not in self.declared_signatures:
                self.declared_signatures.append(tuple(args))
            return None
        return super().compile(sig)

    def disable_compile(self, val: bool = True) -> None:
        if self._declaring and val:
            self._declaring = False  # the declared signatures are all known: stay lazy
            return
        super().disable_compile(val)

    @property
    def signatures(self) -> list[tuple]:
        """The compiled signatures, after compiling the declared ones not compiled yet: what
        inspects a kernel (``inspect_llvm``, ``inspect_asm``, ``signatures`` itself) sees
        every declared signature, as after ``@njit([...])``."""
        if self.pending_signatures:
            self._compile_declared(None)
        return list(self.overloads)

    @property
    def pending_signatures(self) -> list[tuple]:
        """Declared signatures not compiled (nor loaded from the cache) yet."""
        return [s for s in self.declared_signatures if s not in self.overloads]

    def _compile_declared(self, args: tuple | None) -> object:
        """Compile declared signature ``args`` (None: every pending one, then disable
        compilation); the entry point compiled, or None."""
        with global_compiler_lock:
            self._declaring = False
            entry = None
            for sig in self.pending_signatures if args is None else [args]:
                # another thread may have compiled it (and disabled compilation) meanwhile
                done = self.overloads.get(sig)
                entry = done.entry_point if done is not None else super().compile(sig)
            if self.declared_signatures and not self.pending_signatures and self._can_compile:
                super().disable_compile()
            return entry

    def _declared_match(self, argtypes: tuple) -> tuple | None:
        return argtypes if argtypes in self.declared_signatures else None

    # -- calls from Python (the C dispatcher found no compiled overload) --

    def _compile_for_args(self, *args, **kws):
        if self._declaring:  # made without signatures: an ordinary dispatcher
            self._declaring = False
        if not self.declared_signatures or kws:
            return super()._compile_for_args(*args, **kws)
        match = self._declared_match(tuple(self.typeof_pyval(a) for a in args))
        if match is not None:
            return self._compile_declared(match)
        # none of the declared types: compile them all, then resolve as @njit([...]) does
        self._compile_declared(None)
        return self  # called again with the arguments: a conversion, or TypeError

    # -- calls from other jitted functions --

    def get_call_template(self, args, kws):
        if self._declaring:
            self._declaring = False
        if not self.declared_signatures or not self._can_compile:
            return super().get_call_template(args, kws)
        pysig, folded = self._compiler.fold_argument_types(args, kws)
        self._compile_declared(self._declared_match(tuple(folded)))  # None: all of them
        template = typing.make_concrete_template(
            f"CallTemplate({self.py_func.__name__})", key=self.py_func.__name__,
            signatures=self.nopython_signatures)
        return template, pysig, folded, {}

    # -- pickling keeps the declared signatures --

    def _reduce_states(self):
        return dict(super()._reduce_states(), declared=list(self.declared_signatures))

    @classmethod
    def _rebuild(cls, uuid, py_func, locals, targetoptions, can_compile, sigs, declared=()):
        try:
            return cls._memo[uuid]
        except KeyError:
            pass
        self = cls(py_func, locals, targetoptions)
        self._set_uuid(uuid)
        self._declaring = False
        self.declared_signatures = [tuple(s) for s in declared]
        for sig in sigs:
            CPUDispatcher.compile(self, sig)
        self._can_compile = can_compile
        return self


def compile_declared(dispatcher: object) -> int:
    """Compile (or load from the cache) every declared signature of ``dispatcher`` not
    compiled yet; the number of signatures it did. 0 for any other dispatcher."""
    if not isinstance(dispatcher, LazyDispatcher):
        return 0
    pending = len(dispatcher.pending_signatures)
    dispatcher._compile_declared(None)
    return pending


class SoftceCPU(CPU):
    """The CPU target, its ``@jit`` functions made by ``LazyDispatcher``."""


target_registry[TARGET] = SoftceCPU
dispatcher_registry[SoftceCPU] = LazyDispatcher
