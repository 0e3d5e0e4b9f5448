# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim replay-trace``: a real machine's allocation stream drives the model."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import check_invariants
from pagesim.model.mmzone import Machine
from pagesim.model.pageset import set_pcp_limits
from pagesim.procfs.buddyinfo import parse_buddyinfo
from pagesim.procfs.machine import ProcSources, machine_from_proc
from pagesim.procfs.pagetypeinfo import parse_pagetypeinfo
from pagesim.procfs.zoneinfo import parse_zoneinfo
from pagesim.trace import Tracer, parse_ftrace, read_ftrace, validate_trace_events
from pagesim.trace.ftrace import HEADER_TEMPLATE
from pagesim.trace.replay import gfp_zone_name, replay

DEB = Path(__file__).parent / "data" / "reference" / "debian-6.1-2cpu-hotplug"
LOG = DEB / "off4_allocfree.allocfree-trace.head10000.txt.gz"
BEFORE = "off4_allocfree.before"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def captured_machine() -> Machine:
    def read(kind: str) -> str:
        return (DEB / f"{BEFORE}.{kind}.txt").read_text()

    src = ProcSources(parse_zoneinfo(read("zoneinfo"), "zi"), "zi",
                      parse_buddyinfo(read("buddyinfo"), "bi"), "bi",
                      parse_pagetypeinfo(read("pagetypeinfo"), "pti"), "pti")
    return machine_from_proc(src, "v6.1")


def line(ts_us: int, cpu: int, name: str, body: str, comm: str = "dd", pid: int = 9) -> str:
    secs, usec = divmod(ts_us, 1_000_000)
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] ..... {secs:5d}.{usec:06d}: {name}: {body}\n"


def alloc_line(ts: int, cpu: int, pfn: int, order: int = 0, mt: int = 1,
               gfp: str = "GFP_HIGHUSER_MOVABLE") -> str:
    page = "0" * 16 if pfn < 0 else f"{pfn + 0x1000:016x}"
    return line(ts, cpu, "mm_page_alloc", f"page={page} pfn=0x{max(pfn, 0):x} order={order} "
                f"migratetype={mt} gfp_flags={gfp}")


def free_line(ts: int, cpu: int, pfn: int, order: int = 0) -> str:
    return line(ts, cpu, "mm_page_free", f"page={pfn + 0x1000:016x} pfn=0x{pfn:x} "
                f"order={order}")


def synthetic(*lines: str) -> str:
    return HEADER_TEMPLATE.format(n=len(lines), cpus=2) + "".join(lines)


def test_real_log_replays_on_the_captured_machine() -> None:
    """Every mm_page_alloc of the log is an allocation in the model and every
    mm_page_free either frees what the replay allocated or is counted as a page from
    before the log; the model's own mm_page_alloc events match one for one, and the
    machine is consistent afterwards."""
    text = gzip.decompress(LOG.read_bytes()).decode()
    n_alloc = text.count(": mm_page_alloc: ")
    n_free = text.count(": mm_page_free: ")
    log = read_ftrace(LOG)
    m = captured_machine()
    t = Tracer()
    res = replay(m, log, t)
    assert res.allocs == n_alloc and res.alloc_failures == 0
    assert res.frees + res.frees_unknown == n_free
    assert res.frees > 0 and res.frees_unknown > 0
    assert res.not_replayed["mm_page_pcpu_drain"] == text.count(": mm_page_pcpu_drain: ")
    assert res.model_events["mm_page_alloc"] == n_alloc
    assert res.model_events["mm_page_free"] == res.frees
    assert res.still_held == res.allocs - res.frees - res.reallocated
    assert res.pcp_pages == {z.name: sum(p.count for p in z.per_cpu_pageset)
                             for z in m.zones if z.present_pages and not z.boot_pageset}
    assert m.tracer is None  # handed back
    check_invariants(m)
    # the model's events carry the log's tasks, CPUs, times and gfp masks
    log_allocs = [e for e in log.events if e.name == "mm_page_alloc"]
    model_allocs = [e for e in t.events if e.name == "mm_page_alloc"]
    assert [(e.cpu, e.pid, e.comm, e.ts_ns, e.fields["order"], e.fields["migratetype"],
             e.fields["gfp_flags"]) for e in model_allocs] == [
        (e.cpu, e.pid, e.comm, e.ts_ns, e.fields["order"], e.fields["migratetype"],
         e.fields["gfp_flags"]) for e in log_allocs]


def test_free_maps_to_the_models_page() -> None:
    """The log's pfns are names: the free of log pfn X frees the block the model gave
    the allocation of X, on the CPU of the free."""
    m = simple_machine(kern="v6.19", geom=tiny(2, 4, 4), nr_cpus=2,
                       zones=(("Normal", 64),), min_free_kbytes=0)
    set_pcp_limits(m, m.zone("Normal"), 0, 1)
    log = parse_ftrace(synthetic(
        alloc_line(10, 0, 0x5000), alloc_line(11, 1, 0x7000, order=1, mt=0, gfp="GFP_KERNEL"),
        free_line(12, 1, 0x5000), free_line(13, 0, 0x1234), alloc_line(14, 0, -1),
        free_line(15, 0, 0x7000, order=1)), "syn.txt")
    free_before = m.zone("Normal").nr_free_pages
    res = replay(m, log)
    assert (res.allocs, res.frees, res.frees_unknown, res.log_failed_allocs) == (2, 2, 1, 1)
    assert res.still_held == 0 and m.zone("Normal").nr_free_pages == free_before
    assert "1 frees of pages allocated before the log started" in res.summary()
    check_invariants(m)


def test_cpu_beyond_the_machine_is_an_error_naming_the_line() -> None:
    m = simple_machine(kern="v6.19", geom=tiny(2, 4, 4), nr_cpus=1,
                       zones=(("Normal", 64),), min_free_kbytes=0)
    log = parse_ftrace(synthetic(alloc_line(10, 0, 5), alloc_line(11, 1, 6)), "syn.txt")
    with pytest.raises(ValueError, match=r"^syn.txt:14: event on CPU 1, the machine has 1"):
        replay(m, log)


@pytest.mark.parametrize(("gfp", "zone"), [
    ("GFP_HIGHUSER_MOVABLE|__GFP_COMP", "Movable"), ("GFP_KERNEL_ACCOUNT|__GFP_ZERO", "Normal"),
    ("GFP_HIGHUSER|__GFP_ACCOUNT", "Normal"), ("GFP_USER|__GFP_MOVABLE", "Normal"),
    ("GFP_KERNEL|__GFP_DMA32", "DMA32"), ("GFP_DMA", "DMA"),
    ("__GFP_MOVABLE|__GFP_HIGHMEM|__GFP_IO", "Movable")])
def test_gfp_zone(gfp: str, zone: str) -> None:
    assert gfp_zone_name(gfp) == zone


def test_cli_summary_and_outputs(tmp_path: Path) -> None:
    """--out names a directory that does not exist yet: it is made."""
    outdir = tmp_path / "replay"
    code, out, err = run("replay-trace", str(LOG), "--zoneinfo",
                         str(DEB / f"{BEFORE}.zoneinfo.txt"), "--buddyinfo",
                         str(DEB / f"{BEFORE}.buddyinfo.txt"), "--pagetypeinfo",
                         str(DEB / f"{BEFORE}.pagetypeinfo.txt"), "--kernel", "v6.1",
                         "--out", str(outdir))
    assert code == 0, err
    res = replay(captured_machine(), read_ftrace(LOG))
    assert out.startswith(f"replayed {LOG} on v6.1: {sum(res.log_events.values())} events "
                          f"read, {res.allocs + res.frees} replayed")
    assert f"{sum(res.pcp_pages.values())} pages on pcplists" in out
    trace = read_ftrace(outdir / "replay.trace.txt")
    assert trace.counts["mm_page_alloc"] == res.allocs
    assert trace.counts["mm_page_free"] == res.frees
    doc = json.loads((outdir / "replay.perfetto.json").read_text())
    assert validate_trace_events(doc) == []
    assert sorted(p.name for p in outdir.iterdir()) == ["replay.perfetto.json",
                                                          "replay.trace.txt"]


@pytest.mark.parametrize(("content", "extra", "message"), [
    (None, [], "no such file"),
    ("# tracer: nop\n", ["--preset", "4g-2cpu"], "no mm_page_alloc or mm_page_free events"),
    (synthetic(alloc_line(1, 0, 5).replace("order=0", "order=x")), ["--preset", "4g-2cpu"],
     "log.txt:13: malformed mm_page_alloc line"),
    (synthetic(alloc_line(1, 3, 5)), ["--preset", "4g-2cpu"], "log.txt:13: event on CPU 3"),
    # a damaged timestamp or CPU column: the allocation was silently dropped
    (synthetic(alloc_line(1, 0, 5).replace("[000]", "[0x0]")), ["--preset", "4g-2cpu"],
     "log.txt:13: malformed mm_page_alloc line: expected 'TASK-PID [CPU] FLAGS"),
    (synthetic(re.sub(r"\d+\.\d{6}:", "abc:", alloc_line(1, 0, 5))),
     ["--preset", "4g-2cpu"], "log.txt:13: malformed mm_page_alloc line"),
    (synthetic(alloc_line(1, 0, 5)), ["--preset", "4g-2cpu", "--out", "log.txt/sub"],
     "log.txt/sub: cannot create the directory: Not a directory"),
    (synthetic(alloc_line(1, 0, 5)), ["--kernel", "v9.9"], "unknown kernel"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, content: str | None,
                                        extra: list[str], message: str) -> None:
    path = tmp_path / "log.txt"
    if content is not None:
        path.write_text(content)
    extra = [str(tmp_path / a) if a.startswith("log.txt") else a for a in extra]
    code, out, err = run("replay-trace", str(path), *extra)
    assert code == 2 and out == ""
    assert err.startswith("pagesim: error: ") and message in err and err.count("\n") == 1
