# SPDX-License-Identifier: GPL-2.0-only
"""ftrace text: the kmem events as ``/sys/kernel/tracing/trace`` prints them, and back.

Writing follows the kernel's printers so that scripts written for real logs read the
model's: the ``# tracer: nop`` header with its column legend, then one line per event
built as ``trace_print_context`` does (``%16s-%-7d [%03d] `` then the five
irq/need-resched/hardirq/preempt-depth/migrate-disable characters, then `` %5lu.%06lu:
`` with the timestamp rounded to microseconds as ``ns2usecs`` rounds it), the event name
and its ``TP_printk`` body (spec §8.4). The layout is the one of the 6.1 captures in
``tests/data/reference/``; kernels before 5.13 printed a 4-character flags column and a
shorter legend, which the writer does not reproduce.

The body depends on the generation only through the pfn (``%lu`` before 5.14,
``0x%lx`` after: ``Kernel.tracepoint_pfn_hex``) and the migratetype numbering
(ISOLATE prints 4 without CONFIG_CMA). ``page=%p`` prints a hashed pointer; the model
has no struct page addresses, so :func:`page_hash` makes a deterministic stand-in from
the pfn, in the same shape (32 significant bits, 16 hex digits). A parsed line keeps
its real pointer text in ``fields["page"]`` and its flags column in
:attr:`TraceEvent.flags`, which is what makes a real log print back byte for byte.

Reading is tolerant of what a real trace buffer holds besides the kmem events (kprobe
and function-tracer lines, ``CPU:N [LOST M EVENTS]`` markers, a last line cut short
when the capture stopped): such lines are kept verbatim and counted, never an error.
A line of a known event whose body does not have that event's format is an error
naming the file and line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pagesim.model.kernels import Kernel
from pagesim.model.mmzone import (
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
)
from pagesim.trace._files import read_text, write_text_atomic
from pagesim.trace.events import TraceEvent


class TraceFormatError(ValueError):
    """A malformed line of a known event; the message starts with ``file:line:``."""


#: Key under which an event the parser does not know keeps its body text.
RAW_BODY = "_raw"

#: What ``%p`` prints for NULL (a failed allocation's ``page``).
NULL_POINTER = "0000000000000000"

#: The header of a trace with the latency-format columns (6.1 captures).
HEADER_TEMPLATE = (
    "# tracer: nop\n"
    "#\n"
    "# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}\n"
    "#\n"
    "#                                _-----=> irqs-off/BH-disabled\n"
    "#                               / _----=> need-resched\n"
    "#                              | / _---=> hardirq/softirq\n"
    "#                              || / _--=> preempt-depth\n"
    "#                              ||| / _-=> migrate-disable\n"
    "#                              |||| /     delay\n"
    "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
    "#              | |         |   |||||     |         |\n")

#: gfp_flags printed for a model allocation that carries no gfp mask: the mask a
#: typical caller of that migratetype passes (show_gfp_flags prints the composite name).
DEFAULT_GFP = {
    MIGRATE_UNMOVABLE: "GFP_KERNEL",
    MIGRATE_MOVABLE: "GFP_HIGHUSER_MOVABLE",
    MIGRATE_RECLAIMABLE: "GFP_KERNEL|__GFP_RECLAIMABLE",
    MIGRATE_HIGHATOMIC: "GFP_ATOMIC",
    MIGRATE_CMA: "GFP_HIGHUSER_MOVABLE",
}

#: Each known event's printed fields in TP_printk order. "pfn" is generation-dependent;
#: mm_page_free_batched prints a literal "order=0".
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "mm_page_alloc": ("page", "pfn", "order", "migratetype", "gfp_flags"),
    "mm_page_free": ("page", "pfn", "order"),
    "mm_page_free_batched": ("page", "pfn", "order"),
    "mm_page_alloc_zone_locked": ("page", "pfn", "order", "migratetype", "percpu_refill"),
    "mm_page_pcpu_drain": ("page", "pfn", "order", "migratetype"),
    "test_pages_isolated": ("start_pfn", "end_pfn", "fin_pfn", "ret"),
}


@dataclass(frozen=True)
class TraceFormat:
    """What the printed text depends on: the pfn base, whether the kernel has CMA (the
    number ISOLATE prints as), and the pcp locking of the generation (the flags column
    of events the model emits)."""

    pfn_hex: bool = True
    cma: bool = True
    pcp_spinlock: bool = True
    pcp_irqs_enabled: bool = True

    @classmethod
    def of(cls, kernel: Kernel, cma: bool = True) -> TraceFormat:
        return cls(kernel.tracepoint_pfn_hex, cma, kernel.pcp_spinlock,
                   kernel.pcp_irqs_enabled)


def page_hash(pfn: int) -> str:
    """A stand-in for the hashed ``%p`` of pfn's struct page: deterministic, distinct
    for distinct pfns below 2**32, 32 significant bits like the kernel's siphash-based
    pointer ids, never the NULL text."""
    if pfn < 0:
        return NULL_POINTER
    x = (pfn + 0x9E3779B9) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x ^= x >> 16
    return f"{x or 1:016x}"


def _kernel_mt(mt: int, fmt: TraceFormat) -> int:
    return 4 if mt == MIGRATE_ISOLATE and not fmt.cma else mt


def _model_mt(mt: int, fmt: TraceFormat) -> int:
    return MIGRATE_ISOLATE if mt == 4 and not fmt.cma else mt


def _int(fields: dict[str, int | str], key: str) -> int:
    value = fields.get(key, 0)
    return value if isinstance(value, int) else int(value, 0)


def format_body(name: str, fields: dict[str, int | str], fmt: TraceFormat) -> str:
    """The TP_printk text of one event (spec §8.4)."""
    if name not in EVENT_FIELDS:
        raw = fields.get(RAW_BODY)
        if raw is not None:
            return str(raw)
        return " ".join(f"{k}={v}" for k, v in fields.items())
    if name == "test_pages_isolated":
        start, end, fin = (_int(fields, k) for k in ("start_pfn", "end_pfn", "fin_pfn"))
        ret = fields.get("ret") or ("success" if fin >= end else "fail")
        return f"start_pfn=0x{start:x} end_pfn=0x{end:x} fin_pfn=0x{fin:x} ret={ret}"
    pfn = _int(fields, "pfn")
    page = fields.get("page") or page_hash(pfn)
    shown = max(pfn, 0)  # the NULL page prints pfn 0
    pfn_text = f"0x{shown:x}" if fmt.pfn_hex else str(shown)
    order = _int(fields, "order")
    if name in ("mm_page_free", "mm_page_free_batched"):
        return f"page={page} pfn={pfn_text} order={0 if name == 'mm_page_free_batched' else order}"
    mt = _kernel_mt(_int(fields, "migratetype"), fmt)
    head = f"page={page} pfn={pfn_text} order={order} migratetype={mt}"
    if name == "mm_page_alloc":
        gfp = fields.get("gfp_flags") or DEFAULT_GFP.get(_int(fields, "migratetype"),
                                                          "GFP_KERNEL")
        return f"{head} gfp_flags={gfp}"
    if name == "mm_page_alloc_zone_locked":
        return f"{head} percpu_refill={_int(fields, 'percpu_refill')}"
    return head


def _context(name: str, fmt: TraceFormat) -> tuple[bool, int]:
    """(IRQs off, preempt depth) where the kernel emits ``name`` on its common path.

    Under ``zone->lock`` IRQs are off in every generation (taken irqsave, or inside the
    5.x pcp irq-off section); 6.x adds the pcp lock and the task pin to the depth. The
    6.1 captures show ``d..3.`` for refills and flushes from the free path and
    ``...2.`` for batched frees.
    """
    if name in ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain"):
        return True, 3 if fmt.pcp_spinlock else 1
    if name == "mm_page_free_batched":
        if fmt.pcp_spinlock:
            return not fmt.pcp_irqs_enabled, 2
        return True, 0
    return False, 0


def lat_flags(ev: TraceEvent, fmt: TraceFormat) -> str:
    """The five-character irqs-off/need-resched/hardirq/preempt-depth/migrate-disable
    column (``trace_print_lat_fmt``)."""
    if ev.flags is not None:
        return ev.flags
    irqs_off, depth = _context(ev.name, fmt)
    depth_char = "." if not depth else (str(depth) if depth < 10 else f"{min(depth, 15):x}")
    return ("d" if irqs_off or ev.irqs_off else ".") + ".." + depth_char + "."


def format_line(ev: TraceEvent, fmt: TraceFormat) -> str:
    """One event as the trace file prints it (no newline). A task name is at most 15
    characters in the kernel (TASK_COMM_LEN), so a longer one is cut there."""
    usecs = (ev.ts_ns + 500) // 1000  # ns2usecs rounds
    secs, usec = divmod(usecs, 1_000_000)
    return (f"{ev.comm[:15]:>16}-{ev.pid:<7} [{ev.cpu:03d}] {lat_flags(ev, fmt)} {secs:5d}."
            f"{usec:06d}: {ev.name}: {format_body(ev.name, ev.fields, fmt)}")


def render_ftrace(events: Iterable[TraceEvent], fmt: TraceFormat, nr_cpus: int) -> str:
    """A whole trace file: header, then every event in the order given."""
    lines = [format_line(ev, fmt) for ev in events]
    text = HEADER_TEMPLATE.format(n=len(lines), cpus=nr_cpus)
    return text + "".join(line + "\n" for line in lines)


def write_ftrace(path: str | Path, events: Iterable[TraceEvent], fmt: TraceFormat,
                 nr_cpus: int) -> None:
    """:func:`render_ftrace` written whole (temporary file, then rename)."""
    write_text_atomic(path, render_ftrace(events, fmt, nr_cpus))


# =======================================================================================
# Parsing

_LINE_RE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s]{4,5})\s+)?(?P<secs>\d+)\.(?P<usec>\d{6}):\s"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*):(?: (?P<body>.*))?$")

_PFN = r"(0x[0-9a-f]+|\d+)"
_BODY_RES: dict[str, re.Pattern[str]] = {
    "mm_page_alloc": re.compile(r"page=(\S+) pfn=" + _PFN + r" order=(\d+) "
                                r"migratetype=(-?\d+) gfp_flags=(\S+)"),
    "mm_page_free": re.compile(r"page=(\S+) pfn=" + _PFN + r" order=(\d+)"),
    "mm_page_free_batched": re.compile(r"page=(\S+) pfn=" + _PFN + r" order=(0)"),
    "mm_page_alloc_zone_locked": re.compile(r"page=(\S+) pfn=" + _PFN + r" order=(\d+) "
                                            r"migratetype=(-?\d+) percpu_refill=(\d+)"),
    "mm_page_pcpu_drain": re.compile(r"page=(\S+) pfn=" + _PFN + r" order=(\d+) "
                                     r"migratetype=(-?\d+)"),
    "test_pages_isolated": re.compile(r"start_pfn=(0x[0-9a-f]+) end_pfn=(0x[0-9a-f]+) "
                                      r"fin_pfn=(0x[0-9a-f]+) ret=(success|fail)"),
}
#: a known event's name where a line's event name goes (``name: ``)
_KNOWN_EVENT_RE = re.compile(
    r"(?:^|\s)(" + "|".join(_BODY_RES) + r"):(?:\s|$)")
_BODY_SHAPES = {
    "mm_page_alloc": "page=%p pfn=N order=N migratetype=N gfp_flags=FLAGS",
    "mm_page_free": "page=%p pfn=N order=N",
    "mm_page_free_batched": "page=%p pfn=N order=0",
    "mm_page_alloc_zone_locked": "page=%p pfn=N order=N migratetype=N percpu_refill=N",
    "mm_page_pcpu_drain": "page=%p pfn=N order=N migratetype=N",
    "test_pages_isolated": "start_pfn=0xN end_pfn=0xN fin_pfn=0xN ret=success|fail",
}


@dataclass
class FtraceLog:
    """A parsed trace file. ``items`` holds, in file order, an event per event line and
    the text of every other line (kept so the file prints back whole)."""

    path: str
    header: list[str] = field(default_factory=list)
    items: list[TraceEvent | str] = field(default_factory=list)
    #: events per name, known or not
    counts: Counter[str] = field(default_factory=Counter)
    #: lines that are not events (markers, function-tracer lines), and the last line
    #: when the capture cut it short (no newline, not a complete event)
    other_lines: int = 0
    truncated_line: int | None = None
    #: None until a pfn is seen; True for 0x%lx (5.14+), False for %lu
    pfn_hex: bool | None = None
    cma: bool = True
    ends_with_newline: bool = True

    @property
    def events(self) -> list[TraceEvent]:
        return [it for it in self.items if isinstance(it, TraceEvent)]

    def format(self) -> TraceFormat:
        return TraceFormat(pfn_hex=self.pfn_hex is not False, cma=self.cma)

    def unknown_events(self) -> Counter[str]:
        return Counter({k: v for k, v in self.counts.items() if k not in EVENT_FIELDS})


def _parse_body(name: str, body: str, log: FtraceLog, where: str,
                fmt: TraceFormat) -> dict[str, int | str]:
    m = _BODY_RES[name].fullmatch(body)
    if m is None:
        raise TraceFormatError(f"{where}: malformed {name} line: expected "
                               f"'{_BODY_SHAPES[name]}', got {body!r}")
    g = m.groups()
    if name == "test_pages_isolated":
        return {"start_pfn": int(g[0], 16), "end_pfn": int(g[1], 16),
                "fin_pfn": int(g[2], 16), "ret": g[3]}
    pfn_text = g[1]
    hexed = pfn_text.startswith("0x")
    if log.pfn_hex is None:
        log.pfn_hex = hexed
    elif log.pfn_hex != hexed:
        raise TraceFormatError(
            f"{where}: pfn {pfn_text} is {'hex' if hexed else 'decimal'}, earlier lines "
            f"print it in {'hex' if log.pfn_hex else 'decimal'} (two kernels' logs mixed?)")
    pfn = int(pfn_text, 0)
    if g[0] == NULL_POINTER:
        pfn = -1  # the NULL page: the kernel records pfn -1UL and prints 0
    fields: dict[str, int | str] = {"page": g[0], "pfn": pfn, "order": int(g[2])}
    if len(g) > 3:
        fields["migratetype"] = _model_mt(int(g[3]), fmt)
    if name == "mm_page_alloc":
        fields["gfp_flags"] = g[4]
    elif name == "mm_page_alloc_zone_locked":
        fields["percpu_refill"] = int(g[4])
    return fields


def parse_ftrace(text: str, path: str = "<trace>", cma: bool = True) -> FtraceLog:
    """Parse a trace file's text (see the module docstring for what is tolerated)."""
    log = FtraceLog(path, cma=cma)
    fmt = TraceFormat(cma=cma)
    lines = text.split("\n")
    log.ends_with_newline = text.endswith("\n")
    if log.ends_with_newline:
        lines.pop()
    in_header = True
    last = len(lines)
    for lineno, line in enumerate(lines, 1):
        if in_header and line.startswith("#"):
            log.header.append(line)
            continue
        in_header = False
        m = _LINE_RE.match(line)
        cut_short = lineno == last and not log.ends_with_newline
        if m is None:
            known = _KNOWN_EVENT_RE.search(line)
            if known is not None and not cut_short:
                # a kmem event whose task-pid, [CPU] or timestamp column is damaged:
                # skipping it would silently drop an allocation or a free
                raise TraceFormatError(
                    f"{path}:{lineno}: malformed {known.group(1)} line: expected "
                    f"'TASK-PID [CPU] FLAGS SECONDS.USECS: {known.group(1)}: ...', got "
                    f"{line!r}")
            log.items.append(line)
            if cut_short:
                log.truncated_line = lineno
            else:
                log.other_lines += 1
            continue
        name = m.group("name")
        body = m.group("body") or ""
        where = f"{path}:{lineno}"
        if name in _BODY_RES:
            try:
                fields = _parse_body(name, body, log, where, fmt)
            except TraceFormatError:
                if cut_short:
                    log.items.append(line)
                    log.truncated_line = lineno
                    continue
                raise
        else:
            fields = {RAW_BODY: body}
        log.counts[name] += 1
        ts_ns = int(m.group("secs")) * 1_000_000_000 + int(m.group("usec")) * 1000
        flags = m.group("flags")
        log.items.append(TraceEvent(ts_ns, int(m.group("cpu")), int(m.group("pid")),
                                    m.group("comm"), name, fields,
                                    irqs_off=bool(flags) and flags[0] in "dD",
                                    flags=flags))
    return log


def read_ftrace(path: str | Path, cma: bool = True) -> FtraceLog:
    """Parse a trace file, gzipped or not."""
    return parse_ftrace(read_text(path), str(path), cma)


def render_log(log: FtraceLog, fmt: TraceFormat | None = None) -> str:
    """Print a parsed log back: its own header and lines, events re-rendered. A log
    read from a real trace comes back byte for byte (the round-trip test)."""
    f = fmt or log.format()
    out = list(log.header)
    for it in log.items:
        out.append(it if isinstance(it, str) else format_line(it, f))
    text = "\n".join(out)
    return text + "\n" if log.ends_with_newline and out else text
