# SPDX-License-Identifier: GPL-2.0-only
"""``@kernel``: one source, two executions.

Model functions are written once, as generators whose yields are the scheduling points
(:mod:`pagesim.runtime.ops`). The explorers drive them step by step. Real-size runs do
not need the points, and a generator round trip per point would cost far more than the
work between them, so ``@kernel`` also compiles a *sequential variant* from the same
source and attaches it as ``fn.fast``:

* ``yield from f(args)``          becomes ``f.fast(args)``;
* ``yield READ_ONCE(o, "f")``      becomes ``o.f`` (likewise ``READ_ONCE_IDX``);
* ``yield WRITE_ONCE(o, "f", v)``  becomes ``o.f = v`` (likewise ``WRITE_ONCE_IDX``);
* ``yield OP(args)`` for an op marked ``DROP_IN_FAST`` disappears;
* any other ``yield OP(args)``     becomes ``OP.fast(args)``.

Anything else a model function might yield is rejected when the module is imported, so
the two variants cannot drift apart: the transformation is the whole difference, and
tests run both on the same inputs and compare the machines.

A module that calls :func:`pagesim.runtime.linker.link` at its end gets a further step
on top, from the same trees (``fn.fast_tree``): callees inlined into the sequential
variants and one branch per kernel generation, swapped into the same ``fn.fast``
function object on first use.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
from collections.abc import Callable, Generator
from typing import Any, ParamSpec, TypeVar

from pagesim.runtime import ops

P = ParamSpec("P")
R = TypeVar("R")

KernelGen = Generator[Any, Any, R]


class KernelFunctionError(TypeError):
    """A model function that the sequential compiler cannot translate faithfully."""


_INLINE_READS = {"READ_ONCE": "attr", "READ_ONCE_IDX": "idx"}
_INLINE_WRITES = {"WRITE_ONCE": "attr", "WRITE_ONCE_IDX": "idx"}


class _Sequentialise(ast.NodeTransformer):
    def __init__(self, fn: Callable[..., Any], first_line: int = 1) -> None:
        self.fn = fn
        self.globals = fn.__globals__
        self.first_line = first_line

    def _where(self, node: ast.AST) -> str:
        line = getattr(node, "lineno", None)
        where = "?" if line is None else str(line + self.first_line - 1)
        return f"{self.fn.__module__}.{self.fn.__qualname__} (line {where})"

    def _op_class(self, call: ast.expr) -> type[ops.Op] | None:
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            obj = self.globals.get(call.func.id)
            if isinstance(obj, type) and issubclass(obj, ops.Op):
                return obj
        return None

    def _fast_call(self, call: ast.expr, node: ast.AST) -> ast.expr:
        if not isinstance(call, ast.Call):
            raise KernelFunctionError(
                f"{self._where(node)}: model functions may only yield op calls or "
                "'yield from' kernel calls")
        new = ast.Call(
            func=ast.Attribute(value=call.func, attr="fast", ctx=ast.Load()),
            args=call.args, keywords=call.keywords)
        return ast.copy_location(new, call)

    def _inline_read(self, call: ast.Call, name: str) -> ast.expr:
        target = call.args[0]
        if _INLINE_READS[name] == "attr":
            attr = call.args[1]
            if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                raise KernelFunctionError(f"{self._where(call)}: READ_ONCE needs a literal field")
            return ast.copy_location(ast.Attribute(target, attr.value, ast.Load()), call)
        return ast.copy_location(ast.Subscript(target, call.args[1], ast.Load()), call)

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        value = node.value
        if isinstance(value, ast.Yield) and value.value is not None:
            cls = self._op_class(value.value)
            if cls is not None and cls.DROP_IN_FAST:
                return None
            if cls is not None and cls.__name__ in _INLINE_WRITES:
                call = value.value
                assert isinstance(call, ast.Call)
                target = call.args[0]
                store: ast.expr
                if _INLINE_WRITES[cls.__name__] == "attr":
                    attr = call.args[1]
                    if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                        raise KernelFunctionError(
                            f"{self._where(node)}: WRITE_ONCE needs a literal field")
                    store = ast.Attribute(target, attr.value, ast.Store())
                else:
                    store = ast.Subscript(target, call.args[1], ast.Store())
                return ast.copy_location(ast.Assign([store], call.args[2]), node)
        self.generic_visit(node)
        return node

    def visit_Yield(self, node: ast.Yield) -> ast.AST:
        if node.value is None:
            raise KernelFunctionError(f"{self._where(node)}: bare 'yield' in a model function")
        if isinstance(node.value, ast.IfExp):
            # yield (A(...) if cond else B(...)): translate each arm as its own yield
            arm = node.value
            arm.test = self.visit(arm.test)
            arm.body = self.visit_Yield(ast.copy_location(ast.Yield(arm.body), node))  # type: ignore[assignment]
            arm.orelse = self.visit_Yield(ast.copy_location(ast.Yield(arm.orelse), node))  # type: ignore[assignment]
            return arm
        cls = self._op_class(node.value)
        if cls is None:
            raise KernelFunctionError(
                f"{self._where(node)}: only runtime ops may be yielded "
                f"(got {ast.unparse(node.value)})")
        call = node.value
        assert isinstance(call, ast.Call)
        for i, arg in enumerate(call.args):
            call.args[i] = self.visit(arg)
        if cls.__name__ in _INLINE_READS:
            return self._inline_read(call, cls.__name__)
        if cls.DROP_IN_FAST:
            return ast.copy_location(ast.Constant(None), node)
        if cls.FAST_EXPR is not None and not call.keywords and all(
                _simple(a) for a in call.args):
            return ast.copy_location(self._parse_expr(cls.FAST_EXPR), node)
        return self._fast_call(call, node)

    def _parse_expr(self, text: str) -> ast.expr:
        self.globals.setdefault("__pagesim_ops__", ops)
        expr = ast.parse(text.replace("ops.", "__pagesim_ops__."), mode="eval").body
        return expr

    def visit_Call(self, node: ast.Call) -> ast.AST:
        """Inline calls of ``@inline`` helpers: their body is one expression, and the
        arguments are names, constants or attribute/index chains of them, so
        substituting them evaluates nothing twice that has a side effect."""
        self.generic_visit(node)
        if not isinstance(node.func, ast.Name):
            return node
        target = self.globals.get(node.func.id)
        expr = getattr(target, "inline_expr", None)
        if expr is None or node.keywords:
            return node
        params: list[str] = target.inline_params  # type: ignore[union-attr]
        if len(node.args) != len(params) or not all(_simple(a) for a in node.args):
            return node
        mapping = dict(zip(params, node.args, strict=True))
        body = _Substitute(mapping).visit(copy.deepcopy(expr))
        inlined: ast.AST = self.visit(body)
        return ast.copy_location(inlined, node)

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
        call = node.value
        if isinstance(call, ast.Call):
            call.args = [self.visit(a) for a in call.args]
        return self._fast_call(call, node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node is not self.root:
            raise KernelFunctionError(f"{self._where(node)}: nested functions are not allowed")
        node.decorator_list = []
        node.returns = None
        self.generic_visit(node)
        return node

    root: ast.FunctionDef


def _simple(node: ast.expr) -> bool:
    if isinstance(node, ast.Name | ast.Constant):
        return True
    if isinstance(node, ast.Attribute):
        return _simple(node.value)
    if isinstance(node, ast.Subscript):
        return _simple(node.value) and _simple(node.slice)
    if isinstance(node, ast.BinOp):
        return _simple(node.left) and _simple(node.right)
    return False


class _Substitute(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, ast.expr]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.mapping:
            return copy.deepcopy(self.mapping[node.id])
        return node


def inline(fn: Callable[P, R]) -> Callable[P, R]:
    """Mark a small helper for inlining into the sequential variant of ``@kernel``
    functions. Its body must be a single ``return <expression>`` over its parameters
    and globals: on the hot paths a Python call costs more than such a helper's work."""
    lines, _ = inspect.getsourcelines(fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    func = tree.body[0]
    body = [s for s in func.body if not (isinstance(s, ast.Expr)  # type: ignore[attr-defined]
                                         and isinstance(s.value, ast.Constant))]
    if not (isinstance(func, ast.FunctionDef) and len(body) == 1
            and isinstance(body[0], ast.Return) and body[0].value is not None):
        raise KernelFunctionError(f"{fn.__qualname__}: an @inline helper must be one "
                                  "'return <expression>'")
    if func.args.defaults or func.args.kwonlyargs or func.args.vararg or func.args.kwarg:
        raise KernelFunctionError(f"{fn.__qualname__}: an @inline helper takes plain "
                                  "positional parameters only")
    fn.inline_expr = body[0].value  # type: ignore[attr-defined]
    fn.inline_params = [a.arg for a in func.args.args]  # type: ignore[attr-defined]
    return fn


def _compile_fast(fn: Callable[..., Any]) -> Callable[..., Any]:
    if fn.__code__.co_freevars:
        raise KernelFunctionError(f"{fn.__qualname__}: model functions cannot be closures")
    lines, first = inspect.getsourcelines(fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    func = tree.body[0]
    if not isinstance(func, ast.FunctionDef):
        raise KernelFunctionError(f"{fn.__qualname__}: not a plain function")
    tr = _Sequentialise(fn, first)
    tr.root = func
    tr.visit(func)
    # Blocks emptied by dropped ops need a 'pass' to stay valid Python.
    for node in ast.walk(func):
        body = getattr(node, "body", None)
        if isinstance(body, list) and not body:
            body.append(ast.Pass())
        if isinstance(node, ast.Try) and not node.handlers and not node.finalbody:
            node.finalbody.append(ast.Pass())
    # Annotations may name things only imported for type checking.
    for arg in func.args.args + func.args.kwonlyargs + func.args.posonlyargs:
        arg.annotation = None
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first - 1)
    code = compile(tree, inspect.getsourcefile(fn) or "<kernel>", "exec")
    namespace: dict[str, Any] = {}
    exec(code, fn.__globals__, namespace)
    fast: Callable[..., Any] = namespace[fn.__name__]
    fast.__qualname__ = f"{fn.__qualname__}.fast"
    fast.source = ast.unparse(func)  # type: ignore[attr-defined]
    fast.__doc__ = fn.__doc__
    if fn.__defaults__:
        fast.__defaults__ = fn.__defaults__
    # what the linker (pagesim.runtime.linker) inlines into callers
    fn.fast_tree = func  # type: ignore[attr-defined]
    return fast


#: every @kernel function, by module, in definition order (what linker.link() links)
_KERNELS: dict[str, list[Callable[..., Any]]] = {}


def kernel_functions(module: str) -> list[Callable[..., Any]]:
    """The ``@kernel`` functions defined in ``module`` so far."""
    return list(_KERNELS.get(module, ()))


def kernel(fn: Callable[P, Generator[Any, Any, R]]) -> Callable[P, Generator[Any, Any, R]]:
    """Mark a model function and attach its sequential variant as ``fn.fast``."""
    if not inspect.isgeneratorfunction(fn):
        raise KernelFunctionError(
            f"{fn.__qualname__}: a @kernel function must be a generator (use 'yield from' "
            "for kernel calls and 'yield' for ops; add 'yield point(...)' if it has none)")
    fast_fn = _compile_fast(fn)
    # ``fast`` may be replaced (tests spy on it); ``fast_function`` is the compiled
    # function object, whose code the linker swaps (pagesim.runtime.linker)
    fn.fast = fn.fast_function = fast_fn  # type: ignore[attr-defined]
    fn.fast_plain_code = fast_fn.__code__  # type: ignore[attr-defined]
    fn.is_kernel = True  # type: ignore[attr-defined]
    _KERNELS.setdefault(fn.__module__, []).append(fn)
    return fn


def fast(fn: Callable[P, Generator[Any, Any, R]]) -> Callable[P, R]:
    """The sequential variant of a ``@kernel`` function, typed for callers."""
    result: Callable[P, R] = fn.fast  # type: ignore[attr-defined]
    return result
