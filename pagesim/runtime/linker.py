# SPDX-License-Identifier: GPL-2.0-only
"""Link the sequential variants: inline callees into the ``.fast`` forms of ``@kernel``
functions, and specialise them per kernel generation.

The model keeps the kernel's call structure (an order-0 pcp free is ``free_unref_page``
-> ``free_unref_page_prepare`` -> ``free_pages_prepare``, ``get_pfnblock_migratetype``
... -> ``free_unref_page_commit`` -> ``_commit_flush_tuned`` -> two ``pcp_limits``
formulas), because that structure is what the checker interleaves and what a reader
compares with mm/page_alloc.c. Run sequentially it is about twenty Python calls and a
dozen generation tests per alloc+free pair, and a Python call costs more than the work
of most of those functions. :func:`link`, called at the end of a model module, gives
each of its ``@kernel`` functions a second sequential variant built from the first:

* **inlining**: calls of ``@kernel`` functions (``f.fast(...)``) and of plain functions
  of pagesim whose inlined body stays under :data:`MAX_NODES` are replaced by the body,
  where the result can be routed without evaluating anything out of order: ``f(...)``,
  ``x = f(...)`` (any target, tuples included), ``return f(...)`` and ``if [not]
  f(...):``. The callee's locals are renamed, its parameters bound to the arguments in
  order (a local name or a constant is substituted when the callee never rebinds the
  parameter), and its ``return`` becomes an assignment: an early return inside an
  ``if`` takes the rest of the body into the other branch, one inside a loop sets a
  flag and breaks out. A ``return`` inside ``try``/``with`` or a loop's ``else``,
  lambdas, ``global``, ``*args`` or closures leave the callee a call. Module constants
  (upper-case names bound to numbers or strings) become literals.
* **one branch per generation**: a function whose first parameter is the machine
  starts with ``if m.kernel is K:`` for each generation it has been called with (up to
  :data:`MAX_SPECIALISED`), and in that branch every feature test (``m.kernel.x``, or
  ``k.x`` after ``k = m.kernel``) is a constant, so the other generations' code is gone
  from it. A machine's generation never changes and a Kernel's features are fixed when
  it is made (a frozen dataclass), so the test on entry holds for the whole call.

Linking is lazy: ``link`` gives each ``.fast`` a trampoline that builds the linked code
on the first call (and again on the first call with a new generation), so a process
pays only for what it runs. The function object ``fn.fast`` stays the same, only its
``__code__`` changes, so references taken before (``alloc = alloc_pages.fast``) see the
linked code too.

Late binding is kept for what tests rely on: the module a linked function inlined from
is watched, and rebinding one of its functions (``monkeypatch.setattr(page_alloc, "x",
wrapper)``, and the undo) sends every linked function that inlined ``x`` back to its
trampoline, which links it again against the module as it is then; the wrapper, not a
``@kernel`` function, stays a call. Replacing the ``.fast`` attribute of a function
object is not seen by callers that inlined it: mark the function with
:func:`no_inline` before its callers link, or run ``with inlining(False):``, which puts
every plain variant back.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import itertools
import sys
import textwrap
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: Largest callee body (in AST nodes, after its own inlining) copied into a caller. The
#: pcp fast path's callees are all well under it; the refill and flush paths
#: (rmqueue_bulk, free_pcppages_bulk) stay calls, so code size stays linear.
MAX_NODES = 1600

#: ``if f(...):`` branches up to this size (AST nodes) are copied to each return of an
#: inlined ``f``, so that a constant result decides the branch without a test
_SMALL_BRANCHES = 40

_CONSTANT_TYPES = (int, float, str, bytes, bool, type(None))

_ENABLED = True
#: every function given to link(), in order; its index is what its trampoline passes
_FUNCTIONS: list[Any] = []
#: one linker per module: the bodies it built are reused by every later link there
_LINKERS: dict[str, _Linker] = {}
#: the names through which linked code refers to objects (globals injected into the
#: caller's module, which no model name starts with), one per object, process-wide
_CELL_NAMES: dict[int, str] = {}
_CELL_VALUES: dict[str, object] = {}
_COUNTER = itertools.count()


class _NotInlinable(Exception):
    """The callee's shape is one the inliner does not transform; it stays a call."""


def no_inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Keep every call of ``fn`` a call in linked variants (for code that must stay
    observable: a function whose ``.fast`` a test replaces on the function object)."""
    fn.no_inline = True  # type: ignore[attr-defined]
    return fn


def set_inlining(enabled: bool) -> bool:
    """Switch every ``@kernel`` function of the linked modules between its linked and
    its plain sequential variant; returns the previous setting. The function object
    ``fn.fast`` stays the same (only its code changes), so references taken earlier
    follow the switch."""
    global _ENABLED
    previous = _ENABLED
    _ENABLED = enabled
    for index, fn in enumerate(_FUNCTIONS):
        _install(index, fn)
    return previous


@contextmanager
def inlining(enabled: bool) -> Iterator[None]:
    """``with inlining(False):`` runs the plain sequential variants (every kernel call a
    call, looked up at call time), then restores the previous setting."""
    previous = set_inlining(enabled)
    try:
        yield
    finally:
        set_inlining(previous)


def inlining_enabled() -> bool:
    return _ENABLED


def link(module_name: str) -> int:
    """Link the ``@kernel`` functions of ``module_name`` (called at the end of the
    module, when all its callees exist). Linking is lazy: each ``.fast`` gets a
    trampoline that builds its linked code on the first call and swaps it in, so a
    process pays only for the functions it runs. Returns how many functions it took."""
    from pagesim.runtime.kernelfn import kernel_functions

    fns = kernel_functions(module_name)
    for fn in fns:
        if any(f is fn for f in _FUNCTIONS):
            continue
        _FUNCTIONS.append(fn)
        index = len(_FUNCTIONS) - 1
        fn.fast_function.__globals__[  # type: ignore[attr-defined]
            "__pagesim_link_call__"] = _link_call
        _install(index, fn)
    return len(fns)


def _install(index: int, fn: Any) -> None:
    fast = fn.fast_function
    state = _STATE.get(index)
    if not _ENABLED:
        fast.__code__ = fn.fast_plain_code
    elif state is not None:
        fast.__code__ = state.code or fn.fast_plain_code
    else:
        fast.__code__ = _trampoline(index, fn)


def _trampoline(index: int, fn: Any) -> types.CodeType:
    """Code that links ``fn`` and then runs the call that triggered it."""
    source = (f"def {fn.__name__}(*args, **kwargs):\n"
              f"    return __pagesim_link_call__({index}, args, kwargs)\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<link {fn.__qualname__}>", "exec"), fn.__globals__, namespace)
    code: types.CodeType = namespace[fn.__name__].__code__
    return code


@dataclass
class _Linked:
    """A linked function: its generic body and the generations it is specialised for."""

    body: _Body | None
    kernels: list[object] = field(default_factory=list)
    #: no more specialisations: the last branch is the generic body, not the hook
    closed: bool = False
    code: types.CodeType | None = None


#: most generations one function is specialised for; further ones run the generic body
MAX_SPECIALISED = 4

_STATE: dict[int, _Linked] = {}


def _link_call(index: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """First call of a linked function, or first call with a generation it has no
    branch for: (re)compile it and run the call."""
    fn = _FUNCTIONS[index]
    linker = _LINKERS.setdefault(fn.__module__, _Linker())
    state = _STATE.get(index)
    if state is None:
        state = _STATE[index] = _Linked(linker.body(fn))
    kern = getattr(args[0], "kernel", None) if args else None
    if state.body is not None and not state.closed and not any(
            k is kern for k in state.kernels):
        if kern is not None and len(state.kernels) < MAX_SPECIALISED:
            state.kernels.append(kern)
        else:
            state.closed = True
    state.code = linker.link(fn, index, state) if state.body is not None else None
    _install(index, fn)
    return fn.fast_function(*args, **kwargs)


#: (module, name) -> the functions whose linked code inlined what the name held
_DEPENDENTS: dict[tuple[str, str], set[int]] = {}


class _WatchedModule(types.ModuleType):
    """A module whose functions were inlined somewhere: rebinding one of them (as
    ``monkeypatch.setattr(module, name, wrapper)`` does) sends every linked function
    that inlined it back to its trampoline, so its next call links it again against
    the module as it is then."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        _invalidate(self.__name__, name)

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        _invalidate(self.__name__, name)


def _watch(module_name: str) -> None:
    module = sys.modules.get(module_name)
    if module is not None and type(module) is types.ModuleType:
        module.__class__ = _WatchedModule


def _invalidate(module_name: str, name: str) -> None:
    key = (module_name, name)
    dependents = _DEPENDENTS.pop(key, None)
    if not dependents:
        return
    for linker in _LINKERS.values():
        linker.forget(key)
    for index in dependents:
        _STATE.pop(index, None)
        _install(index, _FUNCTIONS[index])


def linked_source(fn: Any) -> str | None:
    """The source of ``fn``'s linked sequential variant as compiled last, or None if
    it has not been linked (its module does not link, or it was never called)."""
    return getattr(fn, "linked_source", None)


# ---------------------------------------------------------------------------------------
# Bodies


@dataclass
class _Body:
    """A function ready to be copied into callers: its parameters and its statements
    with its own callees already inlined."""

    name: str
    params: list[str]
    kwonly: list[str]
    defaults: dict[str, object]
    stmts: list[ast.stmt]
    globals: dict[str, Any]
    filename: str
    cells: dict[str, object] = field(default_factory=dict)
    size: int = 0
    #: (module, name) of every function inlined here, at any depth
    deps: set[tuple[str, str]] = field(default_factory=set)


class _Linker:
    """Builds inlined bodies bottom-up, once per function."""

    def __init__(self) -> None:
        self.bodies: dict[int, _Body | None] = {}
        self.active: set[int] = set()

    def forget(self, key: tuple[str, str]) -> None:
        """Drop the bodies that inlined the function ``key`` named."""
        for fid, body in list(self.bodies.items()):
            if body is not None and key in body.deps:
                del self.bodies[fid]

    def cell(self, obj: object) -> str:
        """The global name through which linked code refers to ``obj``."""
        name = _CELL_NAMES.get(id(obj))
        if name is None:
            name = f"__pagesim_c{len(_CELL_NAMES)}"
            _CELL_NAMES[id(obj)] = name
            _CELL_VALUES[name] = obj
        return name

    def body(self, fn: Any) -> _Body | None:
        key = id(fn)
        if key in self.bodies:
            return self.bodies[key]
        if key in self.active:
            return None  # recursion: leave the inner call a call
        self.active.add(key)
        try:
            result = self._build(fn)
        except _NotInlinable:
            result = None
        finally:
            self.active.discard(key)
        self.bodies[key] = result
        return result

    def _build(self, fn: Any) -> _Body:
        func, filename = _function_tree(fn)
        args = func.args
        if args.vararg or args.kwarg:
            raise _NotInlinable
        params = [a.arg for a in args.posonlyargs + args.args]
        kwonly = [a.arg for a in args.kwonlyargs]
        defaults: dict[str, object] = {}
        for name, value in zip(reversed(params), reversed(fn.__defaults__ or ()),
                               strict=False):
            defaults[name] = value
        defaults.update(fn.__kwdefaults__ or {})
        body = _Body(fn.__name__, params, kwonly, defaults, [], fn.__globals__, filename)
        local_names = _local_names(func)
        stmts = [_Constants(fn.__globals__, local_names).visit(s) for s in _clone(func.body)]
        stmts = _fold_block(_merge_unpacks(stmts))
        stmts = _Site(self, body, local_names).block(stmts)
        body.stmts = _fold_block(stmts)
        body.size = _size(body.stmts)
        return body

    def link(self, fn: Any, index: int, state: _Linked) -> types.CodeType | None:
        """The code of the linked sequential variant of the ``@kernel`` function
        ``fn`` (for its ``.fast`` function object), or None if it has none.

        A function whose first parameter is the machine ``m`` gets one branch per
        generation in ``state.kernels``, chosen by ``m.kernel is K``, in which every
        feature test (``m.kernel.x``, or ``k.x`` after ``k = m.kernel``) is a constant
        and the branches of other generations are gone; an unknown generation runs
        the hook that adds its branch (up to :data:`MAX_SPECIALISED`), then the
        generic body."""
        func, filename = _function_tree(fn)
        body = state.body
        assert body is not None
        func = _clone(func)
        generic = _clone(body.stmts)
        params = [a.arg for a in func.args.posonlyargs + func.args.args]
        machine = params[0] if params else None
        cells = dict(body.cells)
        if machine is None or not state.kernels or _stores(generic, machine):
            func.body = _nonempty(generic)
        else:
            kvar = "__pagesim_kernel"
            chain: list[ast.stmt] = []
            if state.closed:
                chain = generic
            else:
                hook_args = ast.Tuple([ast.Name(p, ast.Load()) for p in params], ast.Load())
                hook_kwargs = ast.Dict([ast.Constant(a.arg) for a in func.args.kwonlyargs],
                                       [ast.Name(a.arg, ast.Load())
                                        for a in func.args.kwonlyargs])
                chain = [ast.Return(ast.Call(ast.Name("__pagesim_link_call__", ast.Load()),
                                             [ast.Constant(index), hook_args, hook_kwargs],
                                             []))]
            for kern in reversed(state.kernels):
                ref = self.cell(kern)
                cells[ref] = kern
                special = _drop_dead_stores(
                    _fold_block(_Specialise(machine, kern, body.stmts).run()), params)
                test = ast.Compare(ast.Name(kvar, ast.Load()), [ast.Is()],
                                   [ast.Name(ref, ast.Load())])
                chain = [ast.If(test, _nonempty(special), chain)]
            kernel_load = ast.Attribute(ast.Name(machine, ast.Load()), "kernel", ast.Load())
            func.body = [ast.Assign([ast.Name(kvar, ast.Store())], kernel_load), *chain]
        module_globals = fn.__globals__
        for name, value in cells.items():
            module_globals[name] = value
        for dep in body.deps:
            _DEPENDENTS.setdefault(dep, set()).add(index)
            _watch(dep[0])
        module = ast.Module([func], type_ignores=[])
        _locate_missing(module)
        code = compile(module, filename, "exec")
        namespace: dict[str, Any] = {}
        exec(code, module_globals, namespace)
        fn.linked_source = ast.unparse(func)
        linked: types.CodeType = namespace[fn.__name__].__code__
        return linked


def _merge_unpacks(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """``t = f(...)`` directly followed by ``a, b = t``, with ``t`` used nowhere else,
    becomes ``a, b = f(...)``: once ``f`` is inlined its ``return (x, y)`` then
    unpacks without building the tuple."""
    counts: dict[str, int] = {}
    for s in stmts:
        for n in ast.walk(s):
            if isinstance(n, ast.Name):
                counts[n.id] = counts.get(n.id, 0) + 1

    def merge(block: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in block:
            prev = out[-1] if out else None
            if (isinstance(s, ast.Assign) and len(s.targets) == 1
                    and isinstance(s.targets[0], ast.Tuple) and isinstance(s.value, ast.Name)
                    and counts.get(s.value.id) == 2 and isinstance(prev, ast.Assign)
                    and len(prev.targets) == 1 and isinstance(prev.targets[0], ast.Name)
                    and prev.targets[0].id == s.value.id and isinstance(prev.value, ast.Call)):
                s.value = prev.value
                out[-1] = s
                continue
            for name in ("body", "orelse", "finalbody"):
                inner = getattr(s, name, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    setattr(s, name, merge(inner))
            if isinstance(s, ast.Try):
                for h in s.handlers:
                    h.body = merge(h.body)
            out.append(s)
        return out

    return merge(stmts)


def _drop_dead_stores(stmts: list[ast.stmt], params: list[str]) -> list[ast.stmt]:
    """Remove ``x = <name, constant or attribute load>`` where ``x`` is never read (the
    ``k = m.kernel`` of each inlined callee once its feature tests are constants)."""
    while True:
        loads = {n.id for s in stmts for n in ast.walk(s)
                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        dead = [False]
        stmts = _filter_stmts(stmts, functools.partial(
            _live, loads=loads, params=params, dead=dead))
        if not dead[0]:
            return stmts


def _live(s: ast.stmt, loads: set[str], params: list[str], dead: list[bool]) -> bool:
    if (isinstance(s, ast.Assign) and len(s.targets) == 1
            and isinstance(s.targets[0], ast.Name) and _pure_load(s.value)
            and s.targets[0].id not in loads and s.targets[0].id not in params):
        dead[0] = True
        return False
    return True


def _filter_stmts(stmts: list[ast.stmt], keep: Callable[[ast.stmt], bool]) -> list[ast.stmt]:
    out = []
    for s in stmts:
        if not keep(s):
            continue
        for name in ("body", "orelse", "finalbody"):
            block = getattr(s, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                new = _filter_stmts(block, keep)
                setattr(s, name, new if new or name != "body" else [ast.Pass()])
        if isinstance(s, ast.Try):
            for h in s.handlers:
                h.body = _filter_stmts(h.body, keep) or [ast.Pass()]
            if not s.handlers and not s.finalbody:
                s.finalbody = [ast.Pass()]
        out.append(s)
    return out


def _stores(stmts: list[ast.stmt], name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load)
               for s in stmts for n in ast.walk(s))


class _Specialise(ast.NodeTransformer):
    """A copy of a linked body for one generation: ``m.kernel.feature`` and
    ``k.feature`` (``k`` bound once to ``m.kernel``) become the generation's values.
    Features are plain values fixed when the Kernel is made (a frozen dataclass), and
    a machine's generation never changes, so the branch that tested ``m.kernel is K``
    may rely on them for the whole call."""

    def __init__(self, machine: str, kern: object, stmts: list[ast.stmt]) -> None:
        self.machine = machine
        self.kernel = kern
        self.stmts = _clone(stmts)
        alias_targets: dict[int, str] = {}
        for s in self.stmts:
            for n in ast.walk(s):
                if (isinstance(n, ast.Assign) and len(n.targets) == 1
                        and isinstance(n.targets[0], ast.Name) and self._is_kernel(n.value)):
                    alias_targets[id(n.targets[0])] = n.targets[0].id
        others = {n.id for s in self.stmts for n in ast.walk(s)
                  if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
                  and id(n) not in alias_targets}
        # a name every store of which is ``= m.kernel`` holds the kernel where read
        self.aliases = set(alias_targets.values()) - others

    def _is_kernel(self, node: ast.expr) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "kernel"
                and isinstance(node.value, ast.Name) and node.value.id == self.machine)

    def run(self) -> list[ast.stmt]:
        return [self.visit(s) for s in self.stmts]

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        base = node.value
        if isinstance(node.ctx, ast.Load) and (
                self._is_kernel(base)
                or (isinstance(base, ast.Name) and base.id in self.aliases)):
            value = getattr(self.kernel, node.attr, _MISSING)
            if isinstance(value, bool | int | str | type(None)):
                return ast.copy_location(ast.Constant(value), node)
        return node


_MISSING = object()


# ---------------------------------------------------------------------------------------
# Sources


def _function_tree(fn: Any) -> tuple[ast.FunctionDef, str]:
    """The function's definition as an AST with file line numbers: for a ``@kernel``
    function its sequential variant, for a plain function its source."""
    tree = getattr(fn, "fast_tree", None) or getattr(fn, "linker_tree", None)
    filename = inspect.getsourcefile(fn) or "<kernel>"
    if tree is not None:
        return tree, filename
    if not isinstance(fn, types.FunctionType) or fn.__code__.co_freevars:
        raise _NotInlinable
    if fn.__code__.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE
                               | inspect.CO_ASYNC_GENERATOR):
        raise _NotInlinable
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        raise _NotInlinable from None
    module = ast.parse(textwrap.dedent("".join(lines)))
    func = module.body[0]
    if not isinstance(func, ast.FunctionDef) or func.name != fn.__name__:
        raise _NotInlinable
    func.decorator_list = []
    func.returns = None
    for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs:
        a.annotation = None
    ast.increment_lineno(module, first - 1)
    fn.linker_tree = func  # type: ignore[attr-defined]  # parsed once
    return func, filename


def _local_names(func: ast.FunctionDef) -> set[str]:
    """Parameters and every name the body binds (the function's locals)."""
    names = {a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs}
    for node in ast.walk(func):
        if node is func:
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal | ast.Lambda | ast.FunctionDef
                        | ast.AsyncFunctionDef | ast.ClassDef | ast.Import
                        | ast.ImportFrom | ast.Yield | ast.YieldFrom | ast.Await):
            raise _NotInlinable
    return names


# ---------------------------------------------------------------------------------------
# Inlining at call sites


class _Site:
    """Walks one function's statements and inlines the calls it can."""

    def __init__(self, linker: _Linker, body: _Body, local_names: set[str]) -> None:
        self.linker = linker
        self.body = body
        self.locals = local_names

    # -- statement walk ---------------------------------------------------------------
    def block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            out.extend(self.stmt(s))
        return out

    def stmt(self, s: ast.stmt) -> list[ast.stmt]:
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call):
            done = self.inline(s.value, s, _Discard())
            if done is not None:
                return done
        elif (isinstance(s, ast.Assign) and len(s.targets) == 1
              and isinstance(s.value, ast.Call)):
            done = self.inline(s.value, s, _Store(s.targets[0]))
            if done is not None:
                return done
        elif isinstance(s, ast.Return) and isinstance(s.value, ast.Call):
            done = self.inline(s.value, s, _Return())
            if done is not None:
                return done
        elif isinstance(s, ast.If):
            test = s.test
            negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
            call = test.operand if isinstance(test, ast.UnaryOp) and negated else test
            s.body = self.block(s.body)
            s.orelse = self.block(s.orelse)
            if not isinstance(call, ast.Call):
                return [s]
            if _size(s.body) + _size(s.orelse) <= _SMALL_BRANCHES and not any(
                    isinstance(n, ast.Break | ast.Continue)
                    for n in ast.walk(ast.Module(s.body + s.orelse, []))):
                # each return of the callee goes straight into the branch it selects
                done = self.inline(call, s, _Branch(s.body, s.orelse, negated))
                if done is not None:
                    return done
            tmp = self.temp("cond")
            assign = ast.copy_location(ast.Assign([ast.Name(tmp, ast.Store())], call), s)
            done = self.inline(call, assign, _Store(assign.targets[0]))
            if done is None:
                return [s]
            flag: ast.expr = ast.Name(tmp, ast.Load())
            s.test = ast.copy_location(ast.UnaryOp(ast.Not(), flag) if negated else flag, test)
            return [*done, s]
        elif isinstance(s, ast.For | ast.While):
            s.body = self.block(s.body)
            s.orelse = self.block(s.orelse)
        elif isinstance(s, ast.With):
            s.body = self.block(s.body)
        elif isinstance(s, ast.Try):
            s.body = self.block(s.body)
            for h in s.handlers:
                h.body = self.block(h.body)
            s.orelse = self.block(s.orelse)
            s.finalbody = self.block(s.finalbody)
        return [s]

    def temp(self, what: str) -> str:
        name = f"_{what}{next(_COUNTER)}"
        self.locals.add(name)
        return name

    # -- resolving callees -------------------------------------------------------------
    def resolve(self, expr: ast.expr) -> object | None:
        """The object a callee expression names now (a global, a cell, a module's
        attribute), or None if it depends on a local."""
        if isinstance(expr, ast.Name):
            if expr.id in self.body.cells:
                return self.body.cells[expr.id]
            if expr.id in self.locals:
                return None
            return self.body.globals.get(expr.id)
        if isinstance(expr, ast.Attribute):
            base = self.resolve(expr.value)
            if isinstance(base, types.ModuleType) or (
                    isinstance(base, type) and base.__module__.startswith("pagesim.")):
                # a module's function, or a class's static method (an op's ``fast``)
                return getattr(base, expr.attr, None)
        return None

    def callee(self, call: ast.Call) -> tuple[ast.expr, Any] | None:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "fast":
            target = self.resolve(func.value)
            if getattr(target, "fast_tree", None) is not None and getattr(
                    target, "is_kernel", False):
                return func.value, target
        target = self.resolve(func)
        if not isinstance(target, types.FunctionType) or getattr(target, "is_kernel", False):
            return None
        module = target.__module__ or ""
        if not (module.startswith("pagesim.") or module == self.body.globals.get("__name__")):
            return None  # the standard library and other packages stay calls
        return func, target

    # -- splicing ----------------------------------------------------------------------
    def inline(self, call: ast.Call, stmt: ast.stmt, ctx: _Context) -> list[ast.stmt] | None:
        # whether or not it is inlined now, rebinding the callee may change that
        func = call.func
        named = func.value if isinstance(func, ast.Attribute) and func.attr == "fast" else func
        self.body.deps.update(self.names(named))
        found = self.callee(call)
        if found is None:
            return None
        callee_expr, fn = found
        if getattr(fn, "no_inline", False):
            return None
        if any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords):
            return None
        callee = self.linker.body(fn)
        if callee is None or callee.size > MAX_NODES:
            return None
        try:
            inlined = self.splice(callee, call, ctx)
        except _NotInlinable:
            return None
        self.body.deps.update(callee.deps)
        self.body.deps.update(self.names(callee_expr))
        return inlined

    def names(self, expr: ast.expr) -> set[tuple[str, str]]:
        """The module attributes a callee expression reads: rebinding any of them
        invalidates the code that inlined the callee."""
        if isinstance(expr, ast.Name):
            if expr.id in self.body.cells:
                return set()
            return {(self.body.globals.get("__name__", "?"), expr.id)}
        if isinstance(expr, ast.Attribute):
            base = self.resolve(expr.value)
            found = self.names(expr.value)
            if isinstance(base, types.ModuleType):
                found.add((base.__name__, expr.attr))
            return found
        return set()

    def splice(self, callee: _Body, call: ast.Call, ctx: _Context) -> list[ast.stmt]:
        stmts = _clone(callee.stmts)
        callee_locals: set[str] = set(callee.params) | set(callee.kwonly)
        for s in stmts:
            for node in ast.walk(s):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                    callee_locals.add(node.id)
                elif isinstance(node, ast.ExceptHandler) and node.name:
                    callee_locals.add(node.name)
        n = next(_COUNTER)
        rename = {name: f"_{callee.name.strip('_')}{n}_{name}" for name in callee_locals}
        # the callee's other names: globals, builtins, cells
        for s in stmts:
            for node in ast.walk(s):
                if (isinstance(node, ast.Name) and node.id not in rename
                        and node.id not in callee.cells):
                    rename[node.id] = self.rebase(callee, node.id)
        for name, value in callee.cells.items():
            self.body.cells[name] = value
        stored = {node.id for s in stmts for node in ast.walk(s)
                  if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del)}
        # bind the arguments in the order Python evaluates them
        bound: dict[str, ast.expr] = {}
        for i, arg in enumerate(call.args):
            if i >= len(callee.params):
                raise _NotInlinable
            bound[callee.params[i]] = arg
        for kw in call.keywords:
            assert kw.arg is not None
            if kw.arg in bound or kw.arg not in callee.params + callee.kwonly:
                raise _NotInlinable
            bound[kw.arg] = kw.value
        prologue: list[ast.stmt] = []
        subst: dict[str, ast.expr] = {}
        order = [*bound]
        for name in callee.params + callee.kwonly:
            if name not in bound:
                if name not in callee.defaults or not isinstance(
                        callee.defaults[name], _CONSTANT_TYPES):
                    raise _NotInlinable
                bound[name] = ast.Constant(callee.defaults[name])  # type: ignore[arg-type]
                order.append(name)
        for name in order:
            arg = bound[name]
            if name not in stored and self.pure_arg(arg):
                subst[rename[name]] = arg
            else:
                prologue.append(ast.Assign([ast.Name(rename[name], ast.Store())],
                                           _clone(arg)))
        self.locals.update(v for k, v in rename.items() if k in callee_locals)
        renamer = _Rename(rename, subst)
        stmts = [renamer.visit(s) for s in stmts]
        if callee.filename != self.body.filename:
            # another file's lines mean nothing here: point them at the call
            for s in stmts:
                for node in ast.walk(s):
                    _locate(node, call)
        lowered = ctx.lower(stmts, self)
        return prologue + lowered

    def pure_arg(self, arg: ast.expr) -> bool:
        """An argument that can be substituted for its parameter: a constant, or a
        local of the caller (the callee's code cannot rebind it) or a frozen cell."""
        if isinstance(arg, ast.Constant):
            return True
        return isinstance(arg, ast.Name) and (arg.id in self.locals
                                              or arg.id in self.body.cells)

    def rebase(self, callee: _Body, name: str) -> str:
        """How the caller refers to what ``name`` means in the callee's module."""
        mine = self.body.globals
        theirs = callee.globals
        if mine is theirs:
            return name
        if name in theirs:
            if name in mine and mine[name] is theirs[name]:
                return name
            ref = self.linker.cell(theirs[name])
            self.body.cells[ref] = theirs[name]
            return ref
        if hasattr(builtins, name) and name not in mine:
            return name
        raise _NotInlinable  # a name the callee could not resolve either


def _is_constant(name: str, value: object) -> bool:
    """A module constant by convention (a name whose first word is upper case, as in
    ``MIGRATE_TYPES`` or the kernel's ``PG_buddy``, bound to a number, a string, None or
    a flat tuple of them), which linked code may use as a literal."""
    if not name.split("_")[0].isupper():
        return False
    if isinstance(value, tuple):
        return all(isinstance(v, _CONSTANT_TYPES) for v in value)
    return isinstance(value, _CONSTANT_TYPES)


class _Constants(ast.NodeTransformer):
    """Module constants become literals (so ``~PG_transit | PG_pcp`` or ``order *
    MIGRATE_TYPES`` fold when compiled)."""

    def __init__(self, module_globals: dict[str, Any], local_names: set[str]) -> None:
        self.globals = module_globals
        self.locals = local_names

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if (isinstance(node.ctx, ast.Load) and node.id not in self.locals
                and node.id in self.globals and _is_constant(node.id, self.globals[node.id])):
            return ast.copy_location(ast.Constant(self.globals[node.id]), node)
        return node


class _Rename(ast.NodeTransformer):
    def __init__(self, rename: dict[str, str], subst: dict[str, ast.expr]) -> None:
        self.rename = rename
        self.subst = subst

    def visit_Name(self, node: ast.Name) -> ast.AST:
        new = self.rename.get(node.id, node.id)
        if isinstance(node.ctx, ast.Load) and new in self.subst:
            value: ast.expr = _clone(self.subst[new])
            return ast.copy_location(value, node)
        node.id = new
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = self.rename.get(node.name, node.name)
        self.generic_visit(node)
        return node


# ---------------------------------------------------------------------------------------
# Where the result goes: lowering ``return``


class _Context(ABC):
    """Rewrites an inlined body's ``return`` statements for one kind of call site."""

    @abstractmethod
    def result(self, value: ast.expr | None) -> list[ast.stmt]:
        """The statements that deliver ``value`` (``None``: a bare ``return``) to the
        call site: discarded, stored, branched on or returned by the caller."""

    def lower(self, stmts: list[ast.stmt], site: _Site) -> list[ast.stmt]:
        return _Lowering(self, site).block(stmts, tail=True)


class _Discard(_Context):
    def result(self, value: ast.expr | None) -> list[ast.stmt]:
        if value is None or _pure(value):
            return []
        return [ast.Expr(value)]


class _Store(_Context):
    def __init__(self, target: ast.expr) -> None:
        self.target = target

    def result(self, value: ast.expr | None) -> list[ast.stmt]:
        return [ast.Assign([_clone(self.target)],
                           value if value is not None else ast.Constant(None))]


class _Branch(_Context):
    """``if [not] f(...): A else: B``: a return of a constant runs A or B, any other
    return value is tested where it is returned."""

    def __init__(self, body: list[ast.stmt], orelse: list[ast.stmt], negated: bool) -> None:
        self.body = body
        self.orelse = orelse
        self.negated = negated

    def result(self, value: ast.expr | None) -> list[ast.stmt]:
        if value is None:
            value = ast.Constant(None)
        if isinstance(value, ast.Constant):
            taken = bool(value.value) != self.negated
            chosen: list[ast.stmt] = _clone(self.body if taken else self.orelse)
            return chosen
        test = ast.UnaryOp(ast.Not(), value) if self.negated else value
        return [ast.If(test, _nonempty(_clone(self.body)), _clone(self.orelse))]


class _Return(_Context):
    def result(self, value: ast.expr | None) -> list[ast.stmt]:
        return [ast.Return(value)]

    def lower(self, stmts: list[ast.stmt], site: _Site) -> list[ast.stmt]:
        # the caller returns what the callee returns: its returns are already right
        return [*stmts, ast.Return(ast.Constant(None))]


class _Lowering:
    def __init__(self, ctx: _Context, site: _Site) -> None:
        self.ctx = ctx
        self.site = site

    def block(self, stmts: list[ast.stmt], tail: bool) -> list[ast.stmt]:
        """``stmts`` with each ``return`` routed to the context; ``tail``: falling off
        the end of this block ends the function (so it returns None)."""
        out: list[ast.stmt] = []
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Return):
                out.extend(self.ctx.result(s.value))
                return out
            if isinstance(s, ast.Raise):
                out.append(s)
                return out
            if not _has_return(s):
                out.append(s)
                continue
            rest = stmts[i + 1:]
            if isinstance(s, ast.If):
                if _always_exits(s.body):
                    body = self.block(s.body, tail)
                    orelse = self.block(s.orelse + rest, tail)
                elif _always_exits(s.orelse):
                    body = self.block(s.body + rest, tail)
                    orelse = self.block(s.orelse, tail)
                else:
                    body = self.block(s.body + rest, tail)
                    orelse = self.block(s.orelse + _clone(rest), tail)
                out.append(ast.copy_location(ast.If(s.test, _nonempty(body), orelse), s))
                return out
            if isinstance(s, ast.For | ast.While) and not any(
                    _has_return(x) for x in s.orelse):
                flag = self.site.temp("ret")
                out.append(ast.Assign([ast.Name(flag, ast.Store())], ast.Constant(False)))
                out.append(self.loop(s, flag))
                after = self.block(rest, tail)
                if after:
                    out.append(ast.If(ast.UnaryOp(ast.Not(), ast.Name(flag, ast.Load())),
                                      after, []))
                return out
            raise _NotInlinable
        if tail:
            out.extend(self.ctx.result(None))
        return out

    def loop(self, s: ast.For | ast.While, flag: str) -> ast.stmt:
        s.body = self.in_loop(s.body, flag)
        return s

    def in_loop(self, stmts: list[ast.stmt], flag: str) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            if isinstance(s, ast.Return):
                out.extend(self.ctx.result(s.value))
                out.append(ast.Assign([ast.Name(flag, ast.Store())], ast.Constant(True)))
                out.append(ast.Break())
                return out
            if not _has_return(s):
                out.append(s)
                continue
            if isinstance(s, ast.If):
                s.body = _nonempty(self.in_loop(s.body, flag))
                s.orelse = self.in_loop(s.orelse, flag)
                out.append(s)
            elif isinstance(s, ast.For | ast.While) and not any(
                    _has_return(x) for x in s.orelse):
                s.body = self.in_loop(s.body, flag)
                out.append(s)
                out.append(ast.If(ast.Name(flag, ast.Load()), [ast.Break()], []))
            else:
                raise _NotInlinable
        return out


def _clone(node: Any) -> Any:
    """A deep copy of an AST (several times faster than copy.deepcopy, which the
    linker would otherwise spend most of its time in)."""
    if isinstance(node, ast.AST):
        new = node.__class__.__new__(node.__class__)
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                value = [_clone(v) for v in value]
            elif isinstance(value, ast.AST):
                value = _clone(value)
            setattr(new, name, value)
        for name in node._attributes:
            if hasattr(node, name):
                setattr(new, name, getattr(node, name))
        return new
    if isinstance(node, list):
        return [_clone(v) for v in node]
    return node


def _size(stmts: list[ast.stmt]) -> int:
    return sum(1 for s in stmts for _ in ast.walk(s))


def _always_exits(stmts: list[ast.stmt]) -> bool:
    """Control never falls off the end of ``stmts``."""
    if not stmts:
        return False
    last = stmts[-1]
    if _terminal(last):
        return True
    if isinstance(last, ast.If):
        return _always_exits(last.body) and _always_exits(last.orelse)
    return False


def _has_return(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Return) for n in ast.walk(node))


# ---------------------------------------------------------------------------------------
# Folding what the sequential translation and the inlining leave behind


def _pure(node: ast.expr) -> bool:
    """Evaluating it changes nothing (names, constants, attribute loads of them)."""
    if isinstance(node, ast.Constant | ast.Name):
        return True
    if isinstance(node, ast.Attribute):
        return _pure(node.value)
    if isinstance(node, ast.IfExp):
        return _pure(node.test) and _pure(node.body) and _pure(node.orelse)
    return False


def _pure_load(node: ast.expr) -> bool:
    """Like :func:`_pure`, with indexing: a value worth computing only if it is used
    (the model's subscripts are of lists, tuples and arrays, which have no effects)."""
    if isinstance(node, ast.Subscript):
        return _pure_load(node.value) and _pure_load(node.slice)
    if isinstance(node, ast.Attribute):
        return _pure_load(node.value)
    return _pure(node)


class _FoldExpr(ast.NodeTransformer):
    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        """Leading constants of ``and``/``or`` decide or drop out (the value, not only
        the truth, is kept: ``True and x`` is ``x``)."""
        self.generic_visit(node)
        stop = isinstance(node.op, ast.Or)  # the constant truth that ends the chain
        values = list(node.values)
        while len(values) > 1 and isinstance(values[0], ast.Constant):
            if bool(values[0].value) == stop:
                return values[0]
            values.pop(0)
        if len(values) == 1:
            return values[0]
        node.values = values
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and isinstance(node.operand, ast.Constant):
            return ast.copy_location(ast.Constant(not node.operand.value), node)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.test, ast.Constant):
            return node.body if node.test.value else node.orelse
        if _pure(node.test) and ast.dump(node.body) == ast.dump(node.orelse):
            return node.body
        return node


def _fold_block(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """Constant tests decided, unreachable and effect-free statements dropped."""
    folder = _FoldExpr()
    return _fold_stmts([folder.visit(s) for s in stmts])


def _fold_stmts(stmts: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for s in stmts:
        if isinstance(s, ast.Expr) and _pure(s.value):
            continue
        if isinstance(s, ast.Pass):
            continue
        if isinstance(s, ast.If):
            if isinstance(s.test, ast.Constant):
                out.extend(_fold_stmts(s.body if s.test.value else s.orelse))
                if out and _terminal(out[-1]):
                    return out
                continue
            while (isinstance(s.test, ast.UnaryOp) and isinstance(s.test.op, ast.Not)
                   and isinstance(s.test.operand, ast.UnaryOp)
                   and isinstance(s.test.operand.op, ast.Not)):
                s.test = s.test.operand.operand  # only the truth value is used
            s.body = _fold_stmts(s.body)
            s.orelse = _fold_stmts(s.orelse)
            if not s.body and not s.orelse:
                if not _pure(s.test):
                    out.append(ast.copy_location(ast.Expr(s.test), s))
                continue
            if not s.body:
                s.test = ast.copy_location(ast.UnaryOp(ast.Not(), s.test), s.test)
                s.body, s.orelse = s.orelse, []
        elif isinstance(s, ast.For | ast.While):
            s.body = _nonempty(_fold_stmts(s.body))
            s.orelse = _fold_stmts(s.orelse)
        elif isinstance(s, ast.With):
            s.body = _nonempty(_fold_stmts(s.body))
        elif isinstance(s, ast.Try):
            s.body = _nonempty(_fold_stmts(s.body))
            for h in s.handlers:
                h.body = _nonempty(_fold_stmts(h.body))
            s.orelse = _fold_stmts(s.orelse)
            s.finalbody = _fold_stmts(s.finalbody)
            if not s.handlers and not s.finalbody:
                s.finalbody = [ast.Pass()]
        out.append(s)
        if _terminal(s):
            break
    return out


def _terminal(s: ast.stmt) -> bool:
    return isinstance(s, ast.Return | ast.Raise | ast.Break | ast.Continue)


def _nonempty(stmts: list[ast.stmt]) -> list[ast.stmt]:
    return stmts if stmts else [ast.Pass()]


def _locate_missing(tree: ast.AST) -> None:
    """ast.fix_missing_locations without recursion (linked functions nest deeply)."""
    stack: list[tuple[ast.AST, int, int]] = [(tree, 1, 0)]
    while stack:
        node, line, col = stack.pop()
        if "lineno" in node._attributes:
            if getattr(node, "lineno", None) is None:
                node.lineno = line  # type: ignore[attr-defined]
                node.col_offset = col  # type: ignore[attr-defined]
                node.end_lineno = line  # type: ignore[attr-defined]
                node.end_col_offset = col  # type: ignore[attr-defined]
            else:
                line = node.lineno  # type: ignore[attr-defined]
                col = node.col_offset  # type: ignore[attr-defined]
                if getattr(node, "end_lineno", None) is None:
                    node.end_lineno = line  # type: ignore[attr-defined]
                    node.end_col_offset = col  # type: ignore[attr-defined]
        stack.extend((child, line, col) for child in ast.iter_child_nodes(node))


def _locate(node: ast.AST, where: ast.AST) -> None:
    for n in ast.walk(node):
        if "lineno" in n._attributes:
            n.lineno = getattr(where, "lineno", 1)  # type: ignore[attr-defined]
            n.col_offset = getattr(where, "col_offset", 0)  # type: ignore[attr-defined]
            n.end_lineno = getattr(where, "end_lineno", None)  # type: ignore[attr-defined]
            n.end_col_offset = getattr(  # type: ignore[attr-defined]
                where, "end_col_offset", None)
