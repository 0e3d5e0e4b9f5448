# SPDX-License-Identifier: GPL-2.0-only
"""The sequential compiler of @kernel functions: same results as stepping the generator,
with points dropped and shared accesses inlined; misuse rejected at import time."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pagesim.runtime import ops
from pagesim.runtime.kernelfn import KernelFunctionError, kernel
from pagesim.runtime.ops import (
    READ_ONCE,
    WRITE_ONCE,
    ModelError,
    SpinLock,
    choose,
    local_irq_restore,
    local_irq_save,
    point,
    spin_lock,
    spin_unlock,
)
from pagesim.runtime.sequential import call, step_through

Gen = Generator[Any, Any, Any]


class Box:
    def __init__(self) -> None:
        self.name = "box"
        self.v = 0
        self.lock = SpinLock("box.lock")


@kernel
def bump(b: Box, n: int) -> Gen:
    yield spin_lock(b.lock)
    v = yield READ_ONCE(b, "v")
    yield WRITE_ONCE(b, "v", v + n)
    yield spin_unlock(b.lock)
    return v + n


@kernel
def twice(b: Box) -> Gen:
    cpu = yield local_irq_save()
    a = yield from bump(b, 1)
    if a > 100:
        yield point("never")
    c = yield from bump(b, cpu + 10)
    yield local_irq_restore()
    return a, c


@kernel
def pick(b: Box) -> Gen:
    i = yield choose(3, "which")
    return i


def test_fast_variant_matches_stepping() -> None:
    b1, b2 = Box(), Box()
    assert call(1, twice, b1) == step_through(1, twice, b2) == (1, 12)
    assert b1.v == b2.v == 12
    assert b1.lock.owner is None and b2.lock.owner is None


def test_fast_variant_has_no_yields() -> None:
    code = twice.fast.__code__  # type: ignore[attr-defined]
    assert not code.co_flags & 0x20  # CO_GENERATOR
    # points and lock ops are gone: no reference to them in the compiled names
    assert "point" not in code.co_names and "spin_lock" not in bump.fast.__code__.co_names  # type: ignore[attr-defined]


def test_stepping_sees_every_op() -> None:
    seen: list[str] = []
    step_through(0, twice, Box(), on_step=lambda op: seen.append(op.describe()))
    assert seen[0] == "local_irq_save"
    assert seen[1:5] == ["spin_lock(&box.lock)", "READ_ONCE(box.v)", "WRITE_ONCE(box.v, 1)",
                         "spin_unlock(&box.lock)"]
    assert seen[-1] == "local_irq_restore"
    assert len(seen) == 10


def test_chooser_is_used_by_both_variants() -> None:
    ops.set_chooser(lambda n, why: n - 1)
    try:
        assert call(0, pick, Box()) == 2
        assert step_through(0, pick, Box()) == 2
    finally:
        ops.set_chooser(None)


def test_double_lock_is_reported_when_stepping() -> None:
    b = Box()
    b.lock.owner = "someone"
    with pytest.raises(ModelError, match="already held"):
        step_through(0, bump, b, 1)


def test_returning_with_irqs_off_is_reported() -> None:
    @kernel
    def leaky() -> Gen:
        yield local_irq_save()

    with pytest.raises(ModelError, match="interrupts off"):
        step_through(0, leaky)


def test_non_generator_rejected() -> None:
    with pytest.raises(KernelFunctionError, match="must be a generator"):
        kernel(lambda: 1)  # type: ignore[arg-type,return-value]


def test_yielding_a_non_op_rejected() -> None:
    with pytest.raises(KernelFunctionError, match="only runtime ops may be yielded"):
        @kernel
        def bad() -> Gen:
            yield 42


def test_read_once_needs_literal_field() -> None:
    with pytest.raises(KernelFunctionError, match="literal field"):
        @kernel
        def bad(b: Box, f: str) -> Gen:
            x = yield READ_ONCE(b, f)
            return x
