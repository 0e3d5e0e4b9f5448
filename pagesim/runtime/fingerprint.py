# SPDX-License-Identifier: GPL-2.0-only
"""Fingerprints of execution states, for the stateful checker.

A state of an :class:`~pagesim.runtime.executor.Execution` is everything that decides
what can happen next: the program state that ``setup()`` built (and the steps changed),
the runtime's bookkeeping (CPU tokens, which threads exist and have finished, what
each waits at, the locks each holds) and, for every thread, where its code stands: its
generator chain with the locals *and the evaluation stack* of every frame (a ``for``
loop's iterator, a bound method waiting for the value a ``yield from`` returns). Two
states with the same fingerprint have the same futures, so a search that has explored
one need not explore the other.

**Canonical form.** The fingerprint is a 128-bit BLAKE2b digest of a canonical
serialisation, a flat token list written by a depth-first traversal from fixed roots
(the program state, then the runtime, then each thread in creation order). Atoms
(``None``, booleans, integers, floats, strings) are written as themselves; every other
value is written as a tag (a one-byte ``bytes``, which no atom is) and then its
contents, and each mutable object is numbered at its first visit and written as a back
reference afterwards. Object identity differs between executions (``setup()`` runs again
for each), but the traversal order depends only on the structure, so two states get
the same token list exactly when their object graphs are the same up to renaming of
the objects, aliasing included (two frames holding the same page list, or two lists
that are equal but distinct). The tokens are serialised with ``marshal`` version 2,
which writes a value's type and contents and nothing else (no reference or interning
flags), so equal tokens give equal bytes and ``True``, ``1`` and ``1.0`` stay apart.

What is encoded how:

* objects of Python classes: the class, then the ``__slots__`` and ``__dict__``
  contents; instances of frozen dataclasses (a :class:`~pagesim.model.kernels.Kernel`,
  a geometry) and long tuples of atoms are serialised once per execution and written as
  a number interned for the whole search;
* lists, tuples, dicts (in insertion order), deques, sets of atoms (sorted), ``bytes``,
  ``bytearray`` and ``array`` (their raw bytes);
* functions: their code, globals, defaults and closure cells; ``functools.partial``;
  bound methods; classes, modules, code objects and built-in functions by identity
  (kept alive for the whole search so an identity is never reused);
* generators: their code, the offset of the instruction they are suspended at, their
  bound locals by name, and their evaluation stack. Python has no API for the stack: it
  is read from :func:`gc.get_referents`, which for a suspended generator of CPython
  3.11/3.12 lists the code, the names, the frame, its locals dict, the function and the
  code again, then the frame's non-empty slots (locals, then the stack) in order. The
  layout is checked on every generator (identity of each fixed entry, and against the
  locals dict), so another interpreter gives "unknown", not a wrong answer. Frames with
  cells or free variables (closures) are "unknown" too: their slots do not line up
  with the locals dict;
* iterators of ranges, lists and tuples, ``enumerate``, ``zip`` and ``reversed``: by
  their ``__reduce__`` (what is iterated and the position).

Anything else (another iterator, a set of objects, whose order is their addresses', an
instance of a class built on a C type) makes the whole state **unknown**:
:meth:`Fingerprinter.fingerprint` returns ``None`` and the checker does not cache that
state. An unknown state costs reduction, never soundness.

Assumptions, stated where they are relied on: model code keeps its state in what
``setup()`` returns and in its frames, not in module globals; a function's
attributes are not state. A digest collision would merge two states: with 128-bit
digests its probability stays below 10^-20 for 10^9 states.

The checker's step bound is not part of the state (the step count is not; see
:mod:`pagesim.explore.stateful` for how the search accounts for it), nor is
``last_tid`` (it only names preemptions in reports), nor the index of the step that
created a work item (bookkeeping of the race analysis).
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import enum
import functools
import gc
import hashlib
import marshal
import operator
import types
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pagesim.runtime.executor import Execution


class Unknown(Exception):
    """Raised inside the traversal for a value it cannot canonicalise."""


# Tags: one-byte bytes objects. No atom is a bytes object (raw bytes are written as a
# tag followed by them), so a reader always knows whether a token starts a value.
_LIST = b"L"
_TUPLE = b"T"
_DICT = b"D"
_DEQUE = b"Q"
_SET = b"S"
_FROZENSET = b"Z"
_OBJ = b"O"
_REF = b"R"
_BYTES = b"B"
_BYTEARRAY = b"Y"
_ARRAY = b"A"
_PIN = b"P"
_VALUE = b"V"
_FUNC = b"F"
_PARTIAL = b"p"
_METHOD = b"M"
_BUILTIN_METHOD = b"b"
_GEN = b"G"
_GEN_DONE = b"X"
_ITER = b"I"
_UNSET = b"U"
_CELL_EMPTY = b"E"
_THREAD = b"t"
_RANGE = b"r"

_ATOMS = frozenset({type(None), bool, int, float, str, complex})
_PINNED_TYPES = (type, types.ModuleType, types.CodeType, types.BuiltinFunctionType,
                 types.MethodDescriptorType, types.WrapperDescriptorType,
                 types.ClassMethodDescriptorType, types.GetSetDescriptorType,
                 types.MemberDescriptorType)
#: what is written by identity: classes, modules, code, built-ins, enum members
_PINNED = (enum.Enum, *_PINNED_TYPES)
_ITERATORS = frozenset({type(iter(range(1))), type(iter(range(1 << 70))),
                        type(iter([])), type(reversed([])), type(iter(())),
                        enumerate, zip, reversed})
_MISSING = object()
#: tuples at least this long, of atoms only, are interned once per execution
_LONG_TUPLE = 8


def _layout_ok() -> bool:
    """Whether this interpreter lays out a suspended generator's referents as the
    module docstring says (checked once on a known generator)."""

    def probe(a: int) -> Any:
        b = [a]
        for _c in range(3):
            yield b

    gen = probe(7)
    next(gen)
    frame = gen.gi_frame
    loc = frame.f_locals
    refs = gc.get_referents(gen)
    return (len(refs) == 7 + len(loc) + 1 and refs[0] is gen.gi_code
            and refs[3] is frame and refs[4] is loc and refs[6] is gen.gi_code
            and refs[7] == 7 and refs[8] is loc["b"]
            and type(refs[10]).__name__ == "range_iterator")


GENERATORS_SUPPORTED = _layout_ok()


class _ClassInfo:
    __slots__ = ("frozen", "getter", "has_dict", "pin", "slots")

    def __init__(self, cls: type, pin: int) -> None:
        self.pin = pin
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            declared = klass.__dict__.get("__slots__", ())
            if isinstance(declared, str):
                declared = (declared,)
            for name in declared:
                if name in ("__dict__", "__weakref__"):
                    continue
                if name.startswith("__") and not name.endswith("__"):
                    name = f"_{klass.__name__.lstrip('_')}{name}"
                if name not in names:
                    names.append(name)
        self.slots = tuple(names)
        self.getter: Callable[[Any], Any] | None = (
            operator.attrgetter(*names) if names else None)
        self.has_dict = any("__dict__" in k.__dict__ for k in cls.__mro__[:-1]) or \
            not any("__slots__" in k.__dict__ for k in cls.__mro__[:-1])
        params = getattr(cls, "__dataclass_params__", None)
        self.frozen = bool(params is not None and params.frozen)
        # State hidden in a C base (a list or dict subclass) is invisible to the walk.
        if any(not (k.__flags__ & (1 << 9)) for k in cls.__mro__[:-1]):  # HEAPTYPE
            raise Unknown(f"instance of {cls.__qualname__}, built on a C type")


class Fingerprinter:
    """Computes fingerprints; one per search (it keeps the pins and interned values
    that make fingerprints comparable across the search's executions)."""

    def __init__(self) -> None:
        #: identity-encoded objects, kept alive so that an id is never reused
        self._pins: dict[int, tuple[int, object]] = {}
        self._classes: dict[type, _ClassInfo | None] = {}
        #: serialised immutable values -> number, for the whole search
        self._values: dict[bytes, int] = {}
        #: per execution: id -> (object, number) of immutable values already interned
        self._memo: dict[int, tuple[object, int]] = {}
        self._memo_owner: object = None
        #: states fingerprinted, and of those unknown
        self.computed = 0
        self.unknown = 0
        self.last_reason = ""
        self._named: list[Any] = []

    # -- public --------------------------------------------------------------------

    def fingerprint(self, ex: Execution, names: dict[int, int] | None = None) -> bytes | None:
        """The digest of ``ex``'s current state, or ``None`` if some part of it cannot
        be canonicalised (see the module docstring). With ``names`` (from
        :meth:`object_names` on this execution), each named object's name is part of
        the fingerprint too: equal fingerprints then also mean the same named objects
        in the same places."""
        self.computed += 1
        if ex is not self._memo_owner:
            self._memo = {}
            self._memo_owner = ex
        try:
            tokens = self._tokens(ex, names)
        except Unknown as why:
            self.unknown += 1
            self.last_reason = str(why)
            return None
        return hashlib.blake2b(marshal.dumps(tokens, 2), digest_size=16).digest()

    def tokens(self, ex: Execution, names: dict[int, int] | None = None) -> list[Any]:
        """The canonical token list itself (for tests and debugging); raises
        :class:`Unknown`."""
        if ex is not self._memo_owner:
            self._memo = {}
            self._memo_owner = ex
        return self._tokens(ex, names)

    def object_names(self, roots: list[Any]) -> dict[int, int]:
        """Number the mutable objects reachable from ``roots`` in traversal order: the
        same numbers for the same objects in every execution of a program (setup builds
        the same state each time). The objects are kept alive until the next call, so
        that no other object takes the identity of a named one meanwhile."""
        seen: dict[int, int] = {}
        keep: list[Any] = []
        # what was numbered before an unknown value keeps its number
        with contextlib.suppress(Unknown):
            self._encoder([], seen, None, keep)(roots)
        self._named = keep
        return seen

    # -- the traversal ----------------------------------------------------------------

    def _tokens(self, ex: Execution, names: dict[int, int] | None) -> list[Any]:
        out: list[Any] = []
        seen: dict[int, int] = {}
        enc = self._encoder(out, seen, names, None)
        enc(ex.state)
        for tid, th in ex.threads.items():
            out.append(_THREAD)
            out.append(tid)
            out.append(th.cpu)
            out.append(th.nqueued)
            out.append(th.ctx.cpu)
            out.append(th.ctx.irqs_off)
            enc(th.work)
            enc(th.held)
            enc(th.pending)
            enc(th.gen)
        out.append(len(ex.token))
        for cpu in sorted(ex.token):
            out.append(cpu)
            out.append(ex.token[cpu])
        out.append(ex.finished)
        out.append(ex.halted)
        return out

    def _pin(self, obj: object) -> int:
        entry = self._pins.get(id(obj))
        if entry is None:
            entry = self._pins[id(obj)] = (len(self._pins), obj)
        return entry[0]

    def _class(self, cls: type) -> _ClassInfo:
        if cls in self._classes:
            info = self._classes[cls]
        else:
            try:
                info = _ClassInfo(cls, self._pin(cls))
            except Unknown:
                info = None
            self._classes[cls] = info
        if info is None:
            raise Unknown(f"instance of {cls.__qualname__}, built on a C type")
        return info

    def _intern(self, sub: list[Any]) -> int:
        key = marshal.dumps(sub, 2)
        n = self._values.get(key)
        if n is None:
            n = self._values[key] = len(self._values)
        return n

    def _encoder(self, out: list[Any], seen: dict[int, int], names: dict[int, int] | None,
                 keep: list[Any] | None) -> Callable[[Any], None]:
        ap = out.append
        atoms = _ATOMS
        memo = self._memo
        classes = self._classes

        def obj(x: Any, info: _ClassInfo) -> None:
            ap(_OBJ)
            ap(info.pin)
            if info.getter is not None:
                try:
                    values = info.getter(x)
                except AttributeError:  # a slot never assigned
                    values = tuple(getattr(x, name, _MISSING) for name in info.slots)
                if len(info.slots) == 1:
                    values = (values,)
                for v in values:
                    if type(v) in atoms:
                        ap(v)
                    elif v is _MISSING:
                        ap(_UNSET)
                    else:
                        enc(v)
            if info.has_dict:
                d = x.__dict__
                ap(len(d))
                for k, v in d.items():
                    ap(k)
                    if type(v) in atoms:
                        ap(v)
                    else:
                        enc(v)

        def enc(x: Any) -> None:
            t = type(x)
            if t in atoms:
                ap(x)
                return
            i = id(x)
            ref = seen.get(i)
            if ref is not None:
                ap(_REF)
                ap(ref)
                return
            if t is tuple:
                if len(x) >= _LONG_TUPLE:
                    hit = memo.get(i)
                    if hit is not None:
                        ap(_VALUE)
                        ap(hit[1])
                        return
                    if all(type(v) in atoms for v in x):
                        n = self._intern([_TUPLE, *x])
                        memo[i] = (x, n)
                        ap(_VALUE)
                        ap(n)
                        return
                ap(_TUPLE)
                ap(len(x))
                for v in x:
                    if type(v) in atoms:
                        ap(v)
                    else:
                        enc(v)
                return
            seen[i] = len(seen)
            if names is not None:
                ap(names.get(i, -1))
            elif keep is not None:
                keep.append(x)
            info = classes.get(t)
            if info is not None and not info.frozen:  # the common case first
                obj(x, info)
            elif t is list:
                ap(_LIST)
                ap(len(x))
                for v in x:
                    if type(v) in atoms:
                        ap(v)
                    else:
                        enc(v)
            elif t is dict:
                ap(_DICT)
                ap(len(x))
                for k, v in x.items():
                    enc(k)
                    enc(v)
            elif t is deque:
                ap(_DEQUE)
                ap(x.maxlen)
                ap(len(x))
                for v in x:
                    if type(v) in atoms:
                        ap(v)
                    else:
                        enc(v)
            elif t is bytearray:
                ap(_BYTEARRAY)
                ap(bytes(x))
            elif t is array.array:
                ap(_ARRAY)
                ap(x.typecode)
                ap(x.tobytes())
            elif t is bytes:
                ap(_BYTES)
                ap(x)
            elif t is range:
                ap(_RANGE)
                ap(x.start)
                ap(x.stop)
                ap(x.step)
            elif t is types.GeneratorType:
                self._generator(x, ap, enc)
            elif t is set or t is frozenset:
                if not all(type(v) in atoms for v in x):
                    raise Unknown("a set of objects (its order is their addresses')")
                ap(_SET if t is set else _FROZENSET)
                ap(len(x))
                for v in sorted(x, key=_atom_order):
                    ap(v)
            elif t is types.FunctionType:
                ap(_FUNC)
                ap(self._pin(x.__code__))
                ap(self._pin(x.__globals__))
                enc(x.__defaults__)
                enc(x.__kwdefaults__)
                cells = x.__closure__ or ()
                ap(len(cells))
                for cell in cells:
                    try:
                        v = cell.cell_contents
                    except ValueError:
                        ap(_CELL_EMPTY)
                    else:
                        enc(v)
            elif t is functools.partial:
                ap(_PARTIAL)
                enc(x.func)
                enc(x.args)
                enc(x.keywords)
            elif t is types.MethodType:
                ap(_METHOD)
                enc(x.__func__)
                enc(x.__self__)
            elif t in _ITERATORS:
                ap(_ITER)
                ap(self._pin(t))
                enc(x.__reduce__())
            elif isinstance(x, _PINNED):
                owner = getattr(x, "__self__", None)
                if (t is types.BuiltinFunctionType and owner is not None
                        and not isinstance(owner, type | types.ModuleType)):
                    ap(_BUILTIN_METHOD)  # [].append: the list is state
                    ap(getattr(x, "__name__", ""))
                    enc(owner)
                else:
                    del seen[i]
                    ap(_PIN)
                    ap(self._pin(x))
            else:
                info = self._class(t)
                if info.frozen:
                    hit = memo.get(i)
                    if hit is None and _immutable(x):
                        sub: list[Any] = []
                        self._encoder(sub, {}, None, None)(_fields(x))
                        hit = memo[i] = (x, self._intern([info.pin, *sub]))
                    if hit is not None:
                        del seen[i]
                        ap(_VALUE)
                        ap(hit[1])
                        return
                obj(x, info)
        return enc

    def _generator(self, gen: Any, ap: Callable[[Any], None],
                   enc: Callable[[Any], None]) -> None:
        frame = gen.gi_frame
        ap(_GEN)
        if frame is None:
            ap(_GEN_DONE)
            return
        if gen.gi_running:
            raise Unknown("a running generator")
        if not GENERATORS_SUPPORTED:
            raise Unknown("generator frames of this Python cannot be read")
        code = gen.gi_code
        if code.co_cellvars or code.co_freevars:
            raise Unknown(f"frame of {code.co_qualname} has closure cells")
        loc = frame.f_locals
        refs = gc.get_referents(gen)
        n = len(loc)
        if (len(refs) < 7 + n or refs[0] is not code or refs[3] is not frame
                or refs[4] is not loc or refs[6] is not code):
            raise Unknown(f"unexpected layout of the frame of {code.co_qualname}")
        ap(self._pin(code))
        ap(frame.f_lasti)
        ap(n)
        for k, v in loc.items():
            ap(k)
            enc(v)
        tail = refs[7 + n:]
        ap(len(tail))
        for v in tail:
            enc(v)


def _fields(x: Any) -> tuple[Any, ...]:
    return tuple(getattr(x, f.name) for f in dataclasses.fields(x))


def _immutable(x: Any) -> bool:
    """Whether nothing reachable from ``x`` can change: atoms, and tuples, frozensets
    and frozen dataclasses of such (a frozen dataclass may still hold a list)."""
    t = type(x)
    if t in _ATOMS or t is bytes or t is range or isinstance(x, _PINNED_TYPES):
        return True
    if t is tuple or t is frozenset:
        return all(_immutable(v) for v in x)
    params = getattr(t, "__dataclass_params__", None)
    if params is not None and params.frozen:
        return all(_immutable(v) for v in _fields(x))
    return False


def _atom_order(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v)
