# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim replay-trace``: a real kmem ftrace log replayed on a model machine.

The machine comes from the /proc files of the machine the log was taken on (``--zoneinfo``,
optionally with its buddyinfo and pagetypeinfo), or a preset. The summary goes to stdout;
with ``--out DIR`` the model's own trace of the replay is written there as ftrace text
(``replay.trace.txt``) and trace-event JSON (``replay.perfetto.json``), each whole or
not at all.
"""

from __future__ import annotations

from pathlib import Path

import click

from pagesim.model.invariants import check_invariants
from pagesim.trace._files import make_dir
from pagesim.trace.events import Tracer
from pagesim.trace.ftrace import TraceFormat, read_ftrace, write_ftrace
from pagesim.trace.perfetto import write_perfetto
from pagesim.trace.replay import replay


@click.command(name="replay-trace")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--zoneinfo", "zoneinfo_file", type=click.Path(dir_okay=False),
              help="the /proc/zoneinfo of the machine the log was taken on")
@click.option("--buddyinfo", "buddyinfo_file", type=click.Path(dir_okay=False),
              help="its /proc/buddyinfo (free blocks per order)")
@click.option("--pagetypeinfo", "pagetypeinfo_file", type=click.Path(dir_okay=False),
              help="its /proc/pagetypeinfo (free blocks per type, pageblock types)")
@click.option("--preset", default=None,
              help="a built-in machine instead of --zoneinfo, e.g. 4g-2cpu")
@click.option("--kernel", "kernel_name", default=None,
              help="kernel generation (default: guessed from --zoneinfo, else v6.19)")
@click.option("--cpus", type=click.IntRange(1, 1024), default=None,
              help="number of CPUs (default: as in the file or preset)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write the model's trace of the replay here (ftrace text and JSON)")
@click.option("--check/--no-check", default=True, show_default=True,
              help="check the model's invariants after the replay")
def replay_trace(log: str, zoneinfo_file: str | None, buddyinfo_file: str | None,
                 pagetypeinfo_file: str | None, preset: str | None, kernel_name: str | None,
                 cpus: int | None, out_dir: str | None, check: bool) -> None:
    """Replay LOG (a kmem ftrace log, gzipped or not): each mm_page_alloc becomes an
    allocation of that order and migratetype on that CPU, each mm_page_free a free of
    the page that allocation got; print what happened."""
    # imported here: pagesim.cli.main imports this module to register the command
    from pagesim.cli.main import build_from_options, fail

    parsed = read_ftrace(log)
    if not parsed.counts["mm_page_alloc"] and not parsed.counts["mm_page_free"]:
        fail(f"{log}: no mm_page_alloc or mm_page_free events to replay")
    m = build_from_options(zoneinfo_file, buddyinfo_file, pagetypeinfo_file, preset,
                           kernel_name, cpus)
    if parsed.pfn_hex is not None and parsed.pfn_hex != m.kernel.tracepoint_pfn_hex:
        click.echo(f"pagesim: note: {log} prints pfns in "
                   f"{'hex' if parsed.pfn_hex else 'decimal'}, as kernels "
                   f"{'from' if parsed.pfn_hex else 'before'} v5.14 do; modelling "
                   f"{m.kernel}", err=True)
    # made before the replay, as simulate and compare do: an --out that cannot be made
    # fails now, not after the work
    out = make_dir(out_dir) if out_dir is not None else None
    tracer = Tracer()
    result = replay(m, parsed, tracer)
    if check:
        check_invariants(m)
    if out is not None:
        fmt = TraceFormat.of(m.kernel, m.geom.cma)
        write_ftrace(out / "replay.trace.txt", tracer.events, fmt, m.nr_cpus)
        write_perfetto(out / "replay.perfetto.json", tracer.events, tracer.spans,
                       nr_cpus=m.nr_cpus, process_name=f"pagesim {m.kernel} replay of "
                       f"{Path(log).name}")
    text = result.summary()
    if out is not None:
        text += f"  wrote {out / 'replay.trace.txt'} and {out / 'replay.perfetto.json'}\n"
    click.echo(text, nl=False)
