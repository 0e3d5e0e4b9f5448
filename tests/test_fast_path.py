# SPDX-License-Identifier: GPL-2.0-only
"""The linker (pagesim.runtime.linker): linked sequential variants compute what the
plain ones and the generators compute, inline what they claim to, specialise per
generation, and still see a module function replaced by a test."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from pagesim.model import page_alloc
from pagesim.model.build import simple_machine
from pagesim.model.invariants import check_invariants
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine
from pagesim.model.page_alloc import free_unref_page, prep_new_page, rmqueue_pcplist
from pagesim.runtime.kernelfn import fast, kernel
from pagesim.runtime.linker import (
    MAX_SPECIALISED,
    inlining,
    link,
    linked_source,
    no_inline,
)
from pagesim.runtime.ops import READ_ONCE, WRITE_ONCE, point
from pagesim.runtime.sequential import step_through

Gen = Generator[Any, Any, Any]

# ---------------------------------------------------------------------------------------
# Toy functions with every shape of return the linker rewrites


class Feat:
    """A stand-in generation: frozen features, as pagesim.model.kernels.Kernel."""

    def __init__(self, double: bool) -> None:
        self.double = double


class Box:
    def __init__(self, double: bool = False) -> None:
        self.name = "box"
        self.v = 0
        self.kernel = Feat(double)


TOY_SCALE = 3


def toy_clamp(x: int, lo: int, hi: int) -> int:
    if x >= hi:
        return hi
    if x <= lo:
        return lo
    return x


def toy_pair(x: int) -> tuple[int, int]:
    if x < 0:
        return (0, -x)
    return (x, x * TOY_SCALE)


@kernel
def toy_find(b: Box, n: int) -> Gen:
    """A return from inside two loops, and one after them."""
    for i in range(n):
        for j in range(i):
            v = yield READ_ONCE(b, "v")
            if (i * j + v) % 7 == 3:
                return i * 10 + j
    return -1


@kernel
def toy_early(b: Box, x: int, scale: int = 2) -> Gen:
    """Early returns in branches that fall through differently, a keyword default."""
    k = b.kernel
    if x > 5:
        if x > 9:
            return 99
        x += 1
    elif x < -5:
        return -99
    if k.double:
        x *= scale
    yield WRITE_ONCE(b, "v", b.v + x)
    return toy_clamp(x, -20, 20)


@kernel
def toy_truth(b: Box, x: int) -> Gen:
    yield point("toy")
    if x % 2:  # noqa: SIM103  (constant returns: the linker routes each to a branch)
        return True
    return False


@kernel
def toy_top(b: Box, x: int) -> Gen:
    """Calls in every place the linker inlines: a statement, an assignment (a tuple
    too), an if test, a return."""
    lo, hi = toy_pair(x)
    total = yield from toy_early(b, x)
    yield from toy_early(b, -x, scale=3)
    if not (yield from toy_truth(b, x)):
        total += 1000
    found = yield from toy_find(b, (x % 5) + 2)
    return (yield from toy_mix(b, total + found + lo - hi))


@kernel
def toy_mix(b: Box, x: int) -> Gen:
    v = yield READ_ONCE(b, "v")
    return x * 31 + v


@no_inline
@kernel
def toy_kept(b: Box) -> Gen:
    yield WRITE_ONCE(b, "v", b.v + 1)
    return b.v


@kernel
def toy_uses_kept(b: Box) -> Gen:
    return (yield from toy_kept(b))


link(__name__)


@pytest.mark.parametrize("double", [False, True])
def test_linked_toys_agree_with_plain_and_stepped(double: bool) -> None:
    for x in range(-12, 13):
        linked_box, plain_box, stepped_box = Box(double), Box(double), Box(double)
        linked = fast(toy_top)(linked_box, x)
        with inlining(False):
            plain = fast(toy_top)(plain_box, x)
        stepped = step_through(0, toy_top, stepped_box, x)
        assert linked == plain == stepped, x
        assert linked_box.v == plain_box.v == stepped_box.v, x


def test_toys_are_inlined_and_specialised() -> None:
    fast(toy_top)(Box(False), 1)
    source = linked_source(toy_top)
    assert source is not None
    for callee in ("toy_early", "toy_truth", "toy_find", "toy_mix", "toy_pair",
                   "toy_clamp"):
        assert f"{callee}(" not in source and f"{callee}.fast(" not in source, callee
    # the generation's feature is a constant in its branch: the test is gone
    assert ".double" not in source.split("else:")[0]
    fast(toy_uses_kept)(Box())
    kept = linked_source(toy_uses_kept)
    assert kept is not None and "toy_kept.fast(" in kept


# ---------------------------------------------------------------------------------------
# The model's pcp fast path


def _pcp_pairs(m: Machine, n: int) -> None:
    take = fast(rmqueue_pcplist)
    give = fast(free_unref_page)
    zone = m.zone("Normal")
    for _ in range(n):
        pfn = take(m, zone, 0, MIGRATE_MOVABLE, 0)
        prep_new_page(m, pfn, 0, MIGRATE_MOVABLE)
        m.refcount[pfn] = 0
        give(m, pfn, 0)


def _python_calls(fn: Any) -> int:
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("kern", ["v5.11", "v6.19"])
def test_pcp_pair_runs_without_nested_calls(kern: str) -> None:
    """The point of linking: an order-0 pcplist alloc+free pair is two Python calls
    (plus prep_new_page) instead of the kernel's call tree."""
    m = simple_machine(kern=kern, nr_cpus=2, zones=(("Normal", 1 << 18),))
    _pcp_pairs(m, 5)  # link, and fill the pcplist
    pairs = 200
    linked = _python_calls(lambda: _pcp_pairs(m, pairs))
    with inlining(False):
        plain = _python_calls(lambda: _pcp_pairs(m, pairs))
    assert linked <= 3 * pairs + 10
    assert plain >= 8 * pairs
    check_invariants(m)


def test_one_function_serves_every_generation() -> None:
    kernels = ["v5.8", "v5.11", "v5.14", "v6.0", "v6.7", "v6.10", "v6.19"]
    assert len(kernels) > MAX_SPECIALISED
    for kern in kernels:
        m = simple_machine(kern=kern, nr_cpus=2, zones=(("Normal", 1 << 18),))
        with inlining(False):
            plain = simple_machine(kern=kern, nr_cpus=2, zones=(("Normal", 1 << 18),))
            _pcp_pairs(plain, 300)
        _pcp_pairs(m, 300)
        check_invariants(m)
        for a, b in zip(m.zones, plain.zones, strict=True):
            for pa, pb in zip(a.per_cpu_pageset, b.per_cpu_pageset, strict=True):
                assert [list(x) for x in pa.lists] == [list(x) for x in pb.lists], kern
                assert (pa.count, pa.high) == (pb.count, pb.high), kern
        assert m.flags == plain.flags and m.private == plain.private, kern
    source = linked_source(free_unref_page)
    assert source is not None
    assert source.count("__pagesim_kernel is") == MAX_SPECIALISED


class _Spy:
    def __init__(self) -> None:
        self.calls = 0


@pytest.fixture
def machine() -> Iterator[Machine]:
    m = simple_machine(kern="v6.19", nr_cpus=2, zones=(("Normal", 1 << 18),))
    _pcp_pairs(m, 3)
    yield m


def test_replacing_a_module_function_reaches_inlined_callers(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the offline tests' Recorder does: a wrapper put in the module is called by
    linked code that had inlined the original, and the original is inlined again after
    the undo."""
    spy = _Spy()
    original = page_alloc.free_unref_page_commit

    def wrapper(*args: Any) -> Gen:
        return (yield from original(*args))

    def wrapper_fast(*args: Any) -> Any:
        spy.calls += 1
        return original.fast(*args)

    wrapper.fast = wrapper_fast  # type: ignore[attr-defined]
    monkeypatch.setattr(page_alloc, "free_unref_page_commit", wrapper)
    _pcp_pairs(machine, 4)
    assert spy.calls == 4
    monkeypatch.undo()
    _pcp_pairs(machine, 4)
    assert spy.calls == 4
    source = linked_source(free_unref_page)
    assert source is not None and "free_unref_page_commit.fast(" not in source
    check_invariants(machine)


def test_a_spy_on_fast_needs_inlining_off(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing ``.fast`` on the function object is invisible to linked callers
    (documented); ``inlining(False)`` is the opt-out that makes it visible."""
    spy = _Spy()
    original = page_alloc.free_unref_page_commit.fast

    def counting(*args: Any) -> Any:
        spy.calls += 1
        return original(*args)

    monkeypatch.setattr(page_alloc.free_unref_page_commit, "fast", counting)
    _pcp_pairs(machine, 3)
    assert spy.calls == 0
    with inlining(False):
        _pcp_pairs(machine, 3)
    assert spy.calls == 3
