# SPDX-License-Identifier: GPL-2.0-only
"""Trace events and the tracer the model writes them to.

The model's functions in :mod:`pagesim.model.page_alloc` hit the kernel's tracepoints
(``include/trace/events/kmem.h``, spec §8.4) only when ``m.tracer is not None``, so a
machine without a tracer pays one attribute test per tracepoint. The tracer knows
nothing of time or tasks by itself: whoever drives the model (the simulator, ``pagesim
replay-trace``, a test) sets :attr:`Tracer.clock_ns` and :attr:`Tracer.tasks`, because
only the driver knows which task runs on which CPU and when.

Events keep the fields the kernel's ``TP_printk`` prints, in the model's numbering
(migratetypes as in :mod:`pagesim.model.mmzone`; a pfn of -1 is the NULL page, which the
kernel's ``TP_fast_assign`` also records as ``-1UL``). Formatting (hex or decimal pfn,
hashed pointers, gfp names, the ftrace line prefix) belongs to the writers in
:mod:`pagesim.trace.ftrace` and :mod:`pagesim.trace.perfetto`, which take the kernel
generation.

Besides point events the driver can record spans (an offline's phases, a drain):
:meth:`Tracer.begin` / :meth:`Tracer.end` or the :meth:`Tracer.span` context manager.
They are kept apart from the kernel's events in :attr:`Tracer.spans`, since no kernel
tracepoint prints them: the Perfetto writer shows them as duration slices on the CPU's
track, the ftrace writer leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pagesim.runtime.ops import CURRENT

#: The kmem events of spec §8.4, in the order the table lists them.
KMEM_EVENTS = ("mm_page_alloc", "mm_page_free", "mm_page_free_batched",
               "mm_page_alloc_zone_locked", "mm_page_pcpu_drain")


@dataclass(slots=True)
class TraceEvent:
    """One tracepoint hit (or one line of a real ftrace log).

    ``flags`` is not part of the model's output: it keeps the irq/preempt column of a
    line read from a real log ("dN.3.") so that the log prints back byte for byte; the
    writer derives the column from ``irqs_off`` and the generation when it is None.
    Likewise a parsed event keeps the hashed ``page`` pointer text among its fields.
    """

    ts_ns: int
    cpu: int
    pid: int
    comm: str
    name: str
    fields: dict[str, int | str]
    irqs_off: bool = False
    flags: str | None = None


@dataclass(slots=True)
class Span:
    """A begin ("B") or end ("E") of an operation the driver reports (trace-event
    phases): an offline, one of its phases, a drain. ``args`` only on "B"."""

    ph: str
    ts_ns: int
    cpu: int
    pid: int
    comm: str
    name: str
    args: dict[str, int | str]


class Tracer:
    """Collects events emitted by the model. The runner owns time and tasks.

    The model calls the tracer as ``tracer(name, fields)`` (the one call on its hot
    path, with a dict it does not reuse); :meth:`emit` is the keyword form for other
    callers. ``gfp_flags``, when a driver sets it, is added to ``mm_page_alloc`` events
    that carry none: the model has no gfp mask, a replayed log does.

    The hot path stores each event's values flat in one list, and :attr:`events` turns
    them into :class:`TraceEvent` objects when read: a dict of numbers is not tracked by
    the garbage collector, where half a million live dataclass objects (or tuples
    holding a dict) would be rescanned by every full collection; that, not the call,
    was most of the cost of tracing a long run.
    """

    __slots__ = ("_events", "_open", "_raw", "clock_ns", "gfp_flags", "spans", "tasks")

    def __init__(self, clock_ns: int = 0,
                 tasks: dict[int, tuple[int, str]] | None = None) -> None:
        self.clock_ns = clock_ns
        self.tasks: dict[int, tuple[int, str]] = tasks if tasks is not None else {}
        self.spans: list[Span] = []
        self.gfp_flags: str | None = None
        self._events: list[TraceEvent] = []
        #: six slots per event (time, cpu, task, name, fields, irqs_off), flat
        self._raw: list[Any] = []
        self._open: dict[int, list[str]] = {}  # cpu -> names of its open slices

    @property
    def events(self) -> list[TraceEvent]:
        """Every event so far, oldest first (the list may be appended to or cleared)."""
        raw = self._raw
        if raw:
            it = iter(raw)
            out = self._events
            for ts, cpu, task, name, fields, irqs_off in zip(it, it, it, it, it, it,
                                                             strict=True):
                pid, comm = task if task is not None else (0, f"swapper/{cpu}")
                out.append(TraceEvent(ts, cpu, pid, comm, name, fields, irqs_off))
            raw.clear()
        return self._events

    def task(self, cpu: int) -> tuple[int, str]:
        """The (pid, comm) running on ``cpu``: the idle task unless the driver said."""
        found = self.tasks.get(cpu)
        return found if found is not None else (0, f"swapper/{cpu}")

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if self.gfp_flags is not None and event == "mm_page_alloc" and "gfp_flags" not in fields:
            fields["gfp_flags"] = self.gfp_flags
        cpu = CURRENT.cpu
        self._raw.extend((self.clock_ns, cpu, self.tasks.get(cpu), event, fields,
                          CURRENT.irqs_off))

    def emit(self, name: str, **fields: int | str) -> None:
        """Record ``name`` with ``fields`` on the current CPU (``pagesim.runtime.ops
        .CURRENT``) at :attr:`clock_ns`."""
        self(name, fields)

    # -- spans ------------------------------------------------------------------------
    def begin(self, name: str, cpu: int | None = None, **args: int | str) -> None:
        """Open a slice ``name`` on ``cpu``'s track (default: the current CPU)."""
        c = CURRENT.cpu if cpu is None else cpu
        pid, comm = self.task(c)
        self.spans.append(Span("B", self.clock_ns, c, pid, comm, name, dict(args)))
        self._open.setdefault(c, []).append(name)

    def end(self, name: str, cpu: int | None = None) -> None:
        """Close the innermost open slice on ``cpu``'s track, which must be ``name``:
        slices on one track nest, and a mismatch is a bug in the driver, caught here
        rather than as a garbled timeline."""
        c = CURRENT.cpu if cpu is None else cpu
        stack = self._open.get(c)
        if not stack:
            raise ValueError(f"tracer: end({name!r}) on cpu{c} without a begin")
        if stack[-1] != name:
            raise ValueError(f"tracer: end({name!r}) on cpu{c} while {stack[-1]!r} is the "
                             "innermost open slice")
        stack.pop()
        pid, comm = self.task(c)
        self.spans.append(Span("E", self.clock_ns, c, pid, comm, name, {}))

    @contextmanager
    def span(self, name: str, cpu: int | None = None, **args: int | str) -> Iterator[None]:
        """``with tracer.span("offline_pages", start_pfn=...):`` begin ... end, also on
        an exception, so the timeline stays balanced."""
        c = CURRENT.cpu if cpu is None else cpu
        self.begin(name, c, **args)
        try:
            yield
        finally:
            self.end(name, c)

    def clear(self) -> None:
        self._raw.clear()
        self._events.clear()
        self.spans.clear()
        self._open.clear()
