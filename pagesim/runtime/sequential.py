# SPDX-License-Identifier: GPL-2.0-only
"""Run kernel calls one at a time, on a chosen CPU.

Two ways, same semantics: ``call`` uses the compiled sequential variant (fast, for
real-size machines and benchmarks); ``step_through`` drives the generator and performs
every op with its checks (a lock taken twice, interrupts restored while on), which is
how tests show that the two variants agree.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from pagesim.runtime.ops import CURRENT, ModelError, Op

R = TypeVar("R")


def call(cpu: int, fn: Callable[..., Generator[Any, Any, R]], *args: Any) -> R:
    """Run the kernel function ``fn(*args)`` to completion on ``cpu``, uninterrupted."""
    CURRENT.cpu = cpu
    result: R = fn.fast(*args)  # type: ignore[attr-defined]
    return result


def step_through(cpu: int, fn: Callable[..., Generator[Any, Any, R]], *args: Any,
                 on_step: Callable[[Op], None] | None = None) -> R:
    """Drive the generator of ``fn(*args)`` on ``cpu``, performing each op in turn."""
    CURRENT.cpu = cpu
    CURRENT.irqs_off = False
    gen = fn(*args)
    value: Any = None
    while True:
        try:
            op = gen.send(value)
        except StopIteration as stop:
            if CURRENT.irqs_off:
                raise ModelError(
                    f"{fn.__name__} returned with interrupts off on cpu{cpu}") from None
            result: R = stop.value
            return result
        if not isinstance(op, Op):
            raise ModelError(f"{fn.__name__} yielded {op!r}, which is not a runtime op")
        if on_step is not None:
            on_step(op)
        value = op.perform(CURRENT)
