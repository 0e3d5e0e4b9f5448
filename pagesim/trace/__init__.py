# SPDX-License-Identifier: GPL-2.0-only
"""Traces in the ecosystem's formats.

* :mod:`pagesim.trace.events`: :class:`TraceEvent`, :class:`Span` and the
  :class:`Tracer` a driver sets as ``Machine.tracer`` to collect the model's kmem
  tracepoints;
* :mod:`pagesim.trace.ftrace`: the events as ftrace text, exactly as the kernel prints
  them, and real ftrace logs parsed back into events;
* :mod:`pagesim.trace.perfetto`: Chrome/Perfetto trace-event JSON, one track per CPU,
  and a validator for that format;
* :mod:`pagesim.trace.replay`: a real log's allocations and frees replayed on a model
  machine (``pagesim replay-trace``).

Typical use by a driver::

    tracer = Tracer()
    m.tracer = tracer
    tracer.tasks[1] = (4837, "dd")
    tracer.clock_ns = 85_580_313_000
    call(1, alloc_pages, m, 0, MIGRATE_MOVABLE)
    write_ftrace("trace.txt", tracer.events, TraceFormat.of(m.kernel, m.geom.cma), m.nr_cpus)
    write_perfetto("trace.json", tracer.events, tracer.spans, nr_cpus=m.nr_cpus)
"""

from pagesim.trace.events import KMEM_EVENTS, Span, TraceEvent, Tracer
from pagesim.trace.ftrace import (
    FtraceLog,
    TraceFormat,
    TraceFormatError,
    parse_ftrace,
    read_ftrace,
    render_ftrace,
    render_log,
    write_ftrace,
)
from pagesim.trace.perfetto import (
    render_perfetto,
    trace_events,
    validate_trace_events,
    write_perfetto,
)

__all__ = [
    "KMEM_EVENTS",
    "FtraceLog",
    "Span",
    "TraceEvent",
    "TraceFormat",
    "TraceFormatError",
    "Tracer",
    "parse_ftrace",
    "read_ftrace",
    "render_ftrace",
    "render_log",
    "render_perfetto",
    "trace_events",
    "validate_trace_events",
    "write_ftrace",
    "write_perfetto",
]
