# SPDX-License-Identifier: GPL-2.0-only
"""kmem tracepoints in the model and the ftrace text format (spec §8.4).

The reader is checked on real 6.1 logs (``tests/data/reference/``): they print back byte
for byte. The model's emission is checked on tiny machines where every refill and flush
is determined, per generation where the kernels differ.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from pagesim.model import page_alloc as pa
from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import check_invariants
from pagesim.model.mmzone import MIGRATE_ISOLATE, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, Machine
from pagesim.model.page_alloc import alloc_pages, drain_pages, free_unref_page_list
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.ops import CURRENT
from pagesim.runtime.sequential import call, step_through
from pagesim.trace import (
    KMEM_EVENTS,
    TraceEvent,
    TraceFormat,
    TraceFormatError,
    Tracer,
    parse_ftrace,
    read_ftrace,
    render_ftrace,
    render_log,
    write_ftrace,
)
from pagesim.trace.ftrace import HEADER_TEMPLATE, format_line, page_hash

put_page = pa.__free_pages

DEB = Path(__file__).parent / "data" / "reference" / "debian-6.1-2cpu-hotplug"
KMEM_LOG = DEB / "offkern_39.kmem-trace.txt.gz"
ALLOCFREE_LOG = DEB / "off4_allocfree.allocfree-trace.head10000.txt.gz"

GENERATIONS = ("v5.10", "v5.11", "v5.14", "v6.1", "v6.10", "v6.19")

#: the kernel's trace_print_context layout with the latency columns
LINE_RE = re.compile(r"^ {0,15}\S{1,15}-\d+ {1,7}\[\d{3}\] [.dD][.nNp][.hHsSzZ][.\d][.\d] "
                     r"{1,5}\d+\.\d{6}: (\w+): (.*)$")


def text_of(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode()


def tiny_machine(kern: str, high: int, batch: int, pages: int = 32, nr_cpus: int = 2,
                 ) -> Machine:
    m = simple_machine(kern=kern, geom=tiny(2, 4, 4), nr_cpus=nr_cpus,
                       zones=(("Normal", pages),), min_free_kbytes=0)
    set_pcp_limits(m, m.zone("Normal"), high, batch)
    return m


def names(events: list[TraceEvent]) -> list[str]:
    return [e.name for e in events]


# ---------------------------------------------------------------------------------------
# Real logs: parse and print back


@pytest.mark.parametrize("path", [KMEM_LOG, ALLOCFREE_LOG], ids=lambda p: p.name)
def test_real_log_prints_back_byte_for_byte(path: Path) -> None:
    text = text_of(path)
    log = read_ftrace(path)
    assert render_log(log) == text
    event_lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert len(log.items) == len(event_lines)
    assert sum(log.counts.values()) == len(event_lines)  # every line of these is an event
    assert log.other_lines == 0 and log.truncated_line is None
    assert log.pfn_hex is True  # a 6.1 kernel


def test_real_log_fields_are_parsed() -> None:
    """Each known event's fields come back as numbers, checked against a plain split of
    the same lines; an event the parser does not know (the kprobe ``free_bulk``) is
    kept with its body and counted, not an error."""
    text = text_of(KMEM_LOG)
    log = read_ftrace(KMEM_LOG)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert log.unknown_events()["free_bulk"] == sum(": free_bulk: " in ln for ln in lines)
    assert log.unknown_events()["free_bulk"] > 0
    for ln, ev in zip(lines, log.events, strict=True):
        head, _, body = ln.partition(f": {ev.name}: ")
        assert ev.cpu == int(head.split("[")[1][:3])
        assert ev.comm == head.split("[")[0].strip().rsplit("-", 1)[0]
        if ev.name not in KMEM_EVENTS:
            assert ev.fields["_raw"] == body
            continue
        kv = dict(tok.split("=", 1) for tok in body.split())
        assert ev.fields["pfn"] == int(kv["pfn"], 16)
        assert ev.fields["order"] == int(kv["order"])
        assert ev.fields["page"] == kv["page"]
        if "migratetype" in kv:
            assert ev.fields["migratetype"] == int(kv["migratetype"])
        assert ev.irqs_off == (ev.flags is not None and ev.flags.startswith("d"))


def test_truncated_last_line_is_kept_not_an_error() -> None:
    """A capture stopped mid-write leaves half a line at the end (two of the real logs
    end so): it is kept and reported, and the text still prints back whole."""
    text = text_of(KMEM_LOG)
    cut = text[:len(text) - 40]
    assert not cut.endswith("\n")
    log = parse_ftrace(cut, "cut.txt")
    assert log.truncated_line == len(cut.split("\n"))
    assert render_log(log) == cut
    assert len(log.events) == len(read_ftrace(KMEM_LOG).events) - 1


def test_other_lines_are_kept_and_counted() -> None:
    text = text_of(KMEM_LOG)
    lines = text.split("\n")
    body_start = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    lines.insert(body_start + 5, "CPU:1 [LOST 1234 EVENTS]")
    lines.insert(body_start + 2, "##### CPU 1 buffer started ####")
    noisy = "\n".join(lines)
    log = parse_ftrace(noisy, "noisy.txt")
    assert log.other_lines == 2
    assert render_log(log) == noisy


@pytest.mark.parametrize(("bad", "problem"), [
    ("order=0 migratetype=1", "order=zero migratetype=1"),
    ("migratetype=1", "migratetype="),
    ("pfn=0x", "pfn=0xg"),
])
def test_malformed_known_event_is_a_one_line_error_with_file_and_line(
        bad: str, problem: str) -> None:
    text = text_of(KMEM_LOG)
    lines = text.split("\n")
    target = next(i for i, ln in enumerate(lines)
                  if "mm_page_alloc_zone_locked:" in ln and bad in ln)
    lines[target] = lines[target].replace(bad, problem, 1)
    with pytest.raises(TraceFormatError) as err:
        parse_ftrace("\n".join(lines), "bad.txt")
    msg = str(err.value)
    assert msg.startswith(f"bad.txt:{target + 1}: malformed mm_page_alloc_zone_locked line")
    assert "\n" not in msg


def test_decimal_and_hex_pfns_in_one_log_are_an_error() -> None:
    good = ("           <...>-1       [000] .....     1.000001: mm_page_free: "
            "page=0000000012345678 pfn=0x10 order=0\n")
    bad = good.replace("pfn=0x10", "pfn=16")
    with pytest.raises(TraceFormatError, match=r"^mixed.txt:2: pfn 16 is decimal"):
        parse_ftrace(good + bad, "mixed.txt")


# ---------------------------------------------------------------------------------------
# The model's tracepoints


@pytest.mark.parametrize("kern", GENERATIONS)
def test_refill_emits_batch_zone_locked_then_one_alloc(kern: str) -> None:
    """§8.4: an order-0 allocation that finds its pcplist empty takes ``batch`` blocks
    under zone->lock, each an mm_page_alloc_zone_locked with percpu_refill=1 and the
    requested type, then ends with one mm_page_alloc of the page it returns."""
    batch = 3
    m = tiny_machine(kern, high=8, batch=batch)
    t = Tracer()
    m.tracer = t
    pfn = call(1, alloc_pages, m, 0, MIGRATE_MOVABLE)
    pcp = m.zone("Normal").per_cpu_pageset[1]
    refilled = [e for e in t.events if e.name == "mm_page_alloc_zone_locked"]
    assert names(t.events) == ["mm_page_alloc_zone_locked"] * batch + ["mm_page_alloc"]
    assert len(refilled) == pcp.count + 1  # what stayed on the list plus the page taken
    assert {e.fields["pfn"] for e in refilled} == set(pcp.lists[MIGRATE_MOVABLE]) | {pfn}
    assert all(e.fields["percpu_refill"] == 1 and e.fields["migratetype"] == MIGRATE_MOVABLE
               and e.fields["order"] == 0 and e.cpu == 1 for e in refilled)
    alloc = t.events[-1]
    assert alloc.fields == {"pfn": pfn, "order": 0, "migratetype": MIGRATE_MOVABLE}
    # the second allocation comes from the list: no zone->lock event
    t.clear()
    call(1, alloc_pages, m, 0, MIGRATE_MOVABLE)
    assert names(t.events) == ["mm_page_alloc"]


@pytest.mark.parametrize("kern", GENERATIONS)
def test_free_over_high_emits_free_then_pcpu_drain(kern: str) -> None:
    """§8.4: every freed page is an mm_page_free (free_pages_prepare, before the
    pcp/buddy decision); the free that brings count to high flushes, one
    mm_page_pcpu_drain per page returned to the buddy, with the type it was freed as."""
    high = 4
    m = tiny_machine(kern, high=0, batch=1)
    pages = [call(0, alloc_pages, m, 0, MIGRATE_UNMOVABLE) for _ in range(high)]
    set_pcp_limits(m, m.zone("Normal"), high, 2)
    t = Tracer()
    m.tracer = t
    pcp = m.zone("Normal").per_cpu_pageset[0]
    for p in pages[:-1]:
        call(0, put_page, m, p, 0)
    assert names(t.events) == ["mm_page_free"] * (high - 1)
    assert [e.fields["pfn"] for e in t.events] == pages[:-1]
    t.clear()
    before = pcp.count + 1
    call(0, put_page, m, pages[-1], 0)
    flushed = before - pcp.count
    assert flushed > 0
    assert names(t.events) == ["mm_page_free"] + ["mm_page_pcpu_drain"] * flushed
    drained = {e.fields["pfn"] for e in t.events[1:]}
    assert drained == set(pages) - set(pcp.lists[MIGRATE_UNMOVABLE])
    assert all(e.fields["migratetype"] == MIGRATE_UNMOVABLE and e.fields["order"] == 0
               for e in t.events[1:])
    check_invariants(m)


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.1", "v6.19"))
def test_batched_free_emits_free_then_free_batched(kern: str) -> None:
    """§3.2 free_unref_page_list: every page's mm_page_free (prepare, up front), then
    one mm_page_free_batched per page at its commit."""
    m = tiny_machine(kern, high=0, batch=1)
    pages = [call(0, alloc_pages, m, 0, MIGRATE_MOVABLE) for _ in range(3)]
    set_pcp_limits(m, m.zone("Normal"), 16, 4)
    for p in pages:
        m.refcount[p] = 0  # release_pages() dropped the last references
    t = Tracer()
    m.tracer = t
    call(0, free_unref_page_list, m, pages)
    assert names(t.events) == ["mm_page_free"] * 3 + ["mm_page_free_batched"] * 3
    assert [e.fields["pfn"] for e in t.events[3:]] == pages


def test_failed_refill_attempt_is_traced_in_5_10_only() -> None:
    """§3.1 step 4: 5.10's __rmqueue emits mm_page_alloc_zone_locked also when it found
    nothing (printed as a NULL page, pfn 0); from 5.11 only a found page is traced."""
    def refill_from_short_zone(kern: str) -> list[TraceEvent]:
        m = tiny_machine(kern, high=0, batch=1, pages=16)
        for _ in range(14):  # leave two free pages
            call(0, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, pa.ALLOC_NO_WATERMARKS)
        set_pcp_limits(m, m.zone("Normal"), 16, 4)
        t = Tracer()
        m.tracer = t
        assert call(0, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, pa.ALLOC_NO_WATERMARKS) >= 0
        return [e for e in t.events if e.name == "mm_page_alloc_zone_locked"]

    old, new = refill_from_short_zone("v5.10"), refill_from_short_zone("v5.11")
    assert [e.fields["pfn"] for e in new] == [e.fields["pfn"] for e in old[:-1]]
    assert len(new) == 2 and old[-1].fields["pfn"] == -1
    line = format_line(old[-1], TraceFormat.of(simple_machine(kern="v5.10").kernel))
    assert line.endswith(": mm_page_alloc_zone_locked: page=0000000000000000 pfn=0 order=0 "
                         "migratetype=1 percpu_refill=1")


def test_failed_allocation_prints_null_page() -> None:
    m = tiny_machine("v6.19", high=0, batch=1, pages=8)
    while call(0, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, pa.ALLOC_NO_WATERMARKS) >= 0:
        pass
    t = Tracer()
    m.tracer = t
    assert call(0, alloc_pages, m, 3, MIGRATE_MOVABLE) == -1
    assert names(t.events) == ["mm_page_alloc"] and t.events[0].fields["pfn"] == -1
    body = format_line(t.events[0], TraceFormat.of(m.kernel)).split(": mm_page_alloc: ")[1]
    assert body == ("page=0000000000000000 pfn=0x0 order=3 migratetype=1 "
                    "gfp_flags=GFP_HIGHUSER_MOVABLE")


@pytest.mark.parametrize(("kern", "hexed"), [("v5.11", False), ("v5.13", False),
                                             ("v5.14", True), ("v6.19", True)])
def test_pfn_base_follows_the_generation(kern: str, hexed: bool) -> None:
    m = tiny_machine(kern, high=8, batch=2, pages=64)
    t = Tracer()
    m.tracer = t
    for _ in range(20):
        call(0, alloc_pages, m, 0, MIGRATE_MOVABLE)
    text = render_ftrace(t.events, TraceFormat.of(m.kernel), m.nr_cpus)
    pfns = re.findall(r" pfn=(\S+) ", text)
    assert pfns and all(p.startswith("0x") == hexed for p in pfns)
    assert any(int(p, 0) > 9 for p in pfns)  # where the two bases differ


def test_isolate_prints_as_4_without_cma() -> None:
    ev = TraceEvent(0, 0, 0, "x", "mm_page_pcpu_drain",
                    {"pfn": 5, "order": 0, "migratetype": MIGRATE_ISOLATE})
    assert format_line(ev, TraceFormat(cma=False)).endswith(" migratetype=4")
    assert format_line(ev, TraceFormat(cma=True)).endswith(" migratetype=5")
    back = parse_ftrace(format_line(ev, TraceFormat(cma=False)) + "\n", cma=False)
    assert back.events[0].fields["migratetype"] == MIGRATE_ISOLATE


# ---------------------------------------------------------------------------------------
# The writer's format


def workload(m: Machine, t: Tracer, *, fast: bool = True) -> None:
    run = call if fast else step_through
    held = []
    for i in range(24):
        cpu = i % m.nr_cpus
        t.clock_ns = 1_000_000_000 + 1234 * i
        t.tasks[cpu] = (100 + cpu, f"cpu{cpu}-workload")
        if i % 3 == 2 and held:
            run(cpu, put_page, m, held.pop(0), 0)
        else:
            pfn = run(cpu, alloc_pages, m, 0, (MIGRATE_MOVABLE, MIGRATE_UNMOVABLE)[i % 2])
            assert pfn >= 0
            held.append(pfn)
    for c in range(m.nr_cpus):
        run(c, drain_pages, m, c)


@pytest.mark.parametrize("kern", GENERATIONS)
def test_model_trace_has_the_kernel_layout_and_parses_back(kern: str, tmp_path: Path) -> None:
    m = tiny_machine(kern, high=6, batch=2, pages=64)
    t = Tracer()
    m.tracer = t
    workload(m, t)
    fmt = TraceFormat.of(m.kernel, m.geom.cma)
    out = tmp_path / "trace.txt"
    write_ftrace(out, t.events, fmt, m.nr_cpus)
    text = out.read_text()
    header = HEADER_TEMPLATE.format(n=len(t.events), cpus=m.nr_cpus)
    real_header = "\n".join(text_of(KMEM_LOG).split("\n")[:12]) + "\n"
    assert header.split("\n")[3:] == real_header.split("\n")[3:]  # the legend, verbatim
    assert text.startswith(header)
    body = text[len(header):].splitlines()
    assert len(body) == len(t.events)
    for line, ev in zip(body, t.events, strict=True):
        match = LINE_RE.match(line)
        assert match, line
        assert match.group(1) == ev.name
    back = read_ftrace(out)
    assert [(e.name, e.cpu, e.pid, e.comm, e.ts_ns // 1000) for e in back.events] == [
        (e.name, e.cpu, e.pid, e.comm, (e.ts_ns + 500) // 1000) for e in t.events]
    for a, b in zip(back.events, t.events, strict=True):
        want = {k: v for k, v in b.fields.items()}
        got = {k: v for k, v in a.fields.items() if k in want}
        assert got == want
        assert a.fields["page"] == page_hash(int(b.fields["pfn"]))
    assert render_log(back) == text


def test_zone_lock_events_show_irqs_off() -> None:
    """§8.4: the zone->lock events run with IRQs off (the 6.1 captures: d..3.)."""
    m = tiny_machine("v6.1", high=6, batch=2, pages=64)
    t = Tracer()
    m.tracer = t
    workload(m, t)
    fmt = TraceFormat.of(m.kernel)
    flags = {format_line(e, fmt).split("] ")[1][:5] for e in t.events
             if e.name in ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain")}
    assert flags == {"d..3."}
    flags = {format_line(e, fmt).split("] ")[1][:5] for e in t.events
             if e.name in ("mm_page_alloc", "mm_page_free")}
    assert flags == {"....."}


@pytest.mark.parametrize("kern", ("v5.10", "v6.1", "v6.19"))
def test_tracing_off_changes_nothing(kern: str) -> None:
    """The same workload with and without a tracer leaves identical machines; without
    one nothing is recorded anywhere."""
    def state(m: Machine) -> tuple[object, ...]:
        z = m.zone("Normal")
        return (bytes(m.flags), bytes(m.private), m.lru_next.tobytes(), m.refcount.tobytes(),
                z.nr_free_pages, [list(map(list, p.lists)) for p in z.per_cpu_pageset])

    traced = tiny_machine(kern, high=6, batch=2, pages=64)
    plain = tiny_machine(kern, high=6, batch=2, pages=64)
    t, idle = Tracer(), Tracer()
    traced.tracer = t
    workload(traced, t)
    workload(plain, idle)  # a tracer that is not attached to the machine
    assert plain.tracer is None and idle.events == [] and t.events
    assert state(traced) == state(plain)


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.1", "v6.19"))
def test_compiled_and_generator_variants_emit_the_same_events(kern: str) -> None:
    """The tracepoint is a plain call inside @kernel functions: the compiled fast
    variant and the generator driven op by op must hit it identically."""
    runs = []
    for fast in (True, False):
        m = tiny_machine(kern, high=6, batch=2, pages=64)
        t = Tracer()
        m.tracer = t
        workload(m, t, fast=fast)
        runs.append([(e.name, e.cpu, e.pid, e.ts_ns, e.fields) for e in t.events])
    assert runs[0] == runs[1]


def test_page_hash_is_a_stable_pointer_stand_in() -> None:
    hashes = [page_hash(p) for p in range(1 << 16)]
    assert len(set(hashes)) == len(hashes)
    assert all(re.fullmatch(r"0{8}[0-9a-f]{8}", h) and h != "0" * 16 for h in hashes)
    assert page_hash(12345) == page_hash(12345) and page_hash(-1) == "0" * 16


def test_gfp_flags_from_the_driver_or_a_default_per_type() -> None:
    m = tiny_machine("v6.19", high=8, batch=2, pages=64)
    t = Tracer()
    m.tracer = t
    call(0, alloc_pages, m, 0, MIGRATE_UNMOVABLE)
    t.gfp_flags = "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"
    call(0, alloc_pages, m, 0, MIGRATE_MOVABLE)
    allocs = [e for e in t.events if e.name == "mm_page_alloc"]
    fmt = TraceFormat.of(m.kernel)
    assert format_line(allocs[0], fmt).endswith(" gfp_flags=GFP_KERNEL")
    assert format_line(allocs[1], fmt).endswith(" gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO")


def test_emit_uses_the_current_cpu_clock_and_task() -> None:
    t = Tracer(clock_ns=5_000)
    t.tasks[1] = (77, "memhp-offline")
    CURRENT.cpu = 1  # what the runtime sets before running model code on CPU 1
    t.emit("test_pages_isolated", start_pfn=0x100, end_pfn=0x200, fin_pfn=0x200)
    ev = t.events[0]
    assert (ev.cpu, ev.pid, ev.comm, ev.ts_ns) == (1, 77, "memhp-offline", 5_000)
    assert format_line(ev, TraceFormat()).endswith(
        ": test_pages_isolated: start_pfn=0x100 end_pfn=0x200 fin_pfn=0x200 ret=success")
    t.tasks.clear()
    t.emit("mm_page_free", pfn=3, order=0)
    assert (t.events[1].pid, t.events[1].comm) == (0, "swapper/1")



@pytest.mark.parametrize("kern", ("v5.10", "v5.11"))
def test_highatomic_path_is_traced_with_the_requested_type(kern: str) -> None:
    """§8.4 (5.x): rmqueue's ALLOC_HARDER attempt on the HIGHATOMIC lists traces the
    block it takes, with the migratetype the caller asked for."""
    m = tiny_machine(kern, high=0, batch=1, pages=64)
    zone = m.zone("Normal")
    call(0, pa.set_pageblock_migratetype, m, 8, pa.MIGRATE_HIGHATOMIC)
    pa.move_freepages_block(m, zone, 8, pa.MIGRATE_HIGHATOMIC)
    t = Tracer()
    m.tracer = t
    pfn = call(0, alloc_pages, m, 1, MIGRATE_UNMOVABLE, 2, pa.ALLOC_HARDER)
    assert 8 <= pfn < 16  # from the HIGHATOMIC block
    assert names(t.events) == ["mm_page_alloc_zone_locked", "mm_page_alloc"]
    assert t.events[0].fields == {"pfn": pfn, "order": 1, "migratetype": MIGRATE_UNMOVABLE,
                                  "percpu_refill": 0}
