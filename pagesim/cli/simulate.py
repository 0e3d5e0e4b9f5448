# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim simulate``: a machine under a workload, on one or more kernel generations.

Without arguments it runs the built-in demo (:mod:`pagesim.sim.demo`): the 16g-8cpu
preset, an offline of a 128 MiB block under load, on v5.8, v5.10, v5.11 and v6.19, and
prints one summary table with a column per generation. ``--out DIR`` receives what the
run produces: ``results.json`` (per generation ``DIR/<kernel>/results.json`` when there
are several) and, with ``--trace``, ``trace.txt`` (ftrace) and ``trace.json`` (Perfetto)
beside it, the plots of :mod:`pagesim.sim.plots` when matplotlib is installed, and
``report.html``, the run's HTML trace explorer (:mod:`pagesim.report`). Files
are written whole or not at all.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from pagesim.cli.options import pool_options
from pagesim.model.kernels import Kernel
from pagesim.model.kernels import kernel as kernel_of
from pagesim.model.mmzone import Machine
from pagesim.scale import SerialPool, make_pool
from pagesim.sim.compare import Sysctl, apply_sysctl
from pagesim.sim.demo import (
    DEMO_KERNELS,
    DEMO_PRESET,
    DEMO_SEED,
    demo_workload,
    resolve_workload,
)
from pagesim.sim.plots import INSTALL_HINT, plots_available, write_plots
from pagesim.sim.results import RESULTS_NAME, summary, to_json, write_results
from pagesim.sim.runner import SimResult, Simulation
from pagesim.sim.workload import Workload, WorkloadError
from pagesim.trace._files import make_dir


def register(cli: click.Group) -> None:
    """Add ``simulate`` to the ``pagesim`` group (main.py owns the group)."""
    cli.add_command(simulate)


@click.command()
@click.option("--zoneinfo", "--from", "zoneinfo_file", type=click.Path(dir_okay=False),
              help="a /proc/zoneinfo to build the machine from")
@click.option("--buddyinfo", "buddyinfo_file", type=click.Path(dir_okay=False),
              help="its /proc/buddyinfo")
@click.option("--pagetypeinfo", "pagetypeinfo_file", type=click.Path(dir_okay=False),
              help="its /proc/pagetypeinfo")
@click.option("--preset", default=None, help=f"a built-in machine (default {DEMO_PRESET})")
@click.option("--kernel", "kernel_names", default=None,
              help="generation(s), comma-separated (default: "
                   f"{','.join(DEMO_KERNELS)}; with --zoneinfo, the file's)")
@click.option("--cpus", type=click.IntRange(1, 1024), default=None,
              help="number of CPUs (default: the file's or the preset's)")
@click.option("--workload", "workload_file", type=click.Path(dir_okay=False),
              help="a TOML workload, or a built-in one by name (default: the demo's "
                   "offline-under-load)")
@click.option("--seed", type=click.IntRange(min=0), default=DEMO_SEED, show_default=True,
              help="seed of the scheduler's choices")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="directory for the results file (and traces)")
@click.option("--trace", is_flag=True, help="record kmem trace events (needs --out)")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
@pool_options("the generations")
def simulate(zoneinfo_file: str | None, buddyinfo_file: str | None,
             pagetypeinfo_file: str | None, preset: str | None, kernel_names: str | None,
             cpus: int | None, workload_file: str | None, seed: int, out_dir: str | None,
             trace: bool, as_json: bool, jobs: int | None, scheduler: str | None) -> None:
    """Run a workload on a real-size machine, per kernel generation, and summarise it.

    Without arguments: the 2020 story (an offline of a memory block under load) on a
    16 GiB, 8-CPU machine, for v5.8, v5.10, v5.11 and v6.19."""
    from pagesim.cli.main import fail

    if trace and not out_dir:
        fail("--trace writes trace.txt and trace.json into --out; give --out DIR")
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        fail(f"{out_dir}: not a directory")
    try:
        workload = resolve_workload(workload_file) if workload_file else demo_workload()
    except WorkloadError as e:
        fail(str(e))
    if kernel_names is not None:
        names = [n.strip() for n in kernel_names.split(",") if n.strip()]
        if not names:
            fail("--kernel: give at least one generation")
        kernels: list[Kernel | None] = [kernel_of(n) for n in names]
        given = [k.name for k in kernels if k is not None]
        for name in given:
            if given.count(name) > 1:
                fail(f"--kernel: {name} is given twice")
    elif zoneinfo_file:
        kernels = [None]  # guessed from the file
    else:
        kernels = [kernel_of(n) for n in DEMO_KERNELS]
    runs = [workload_machine(workload, zoneinfo_file, buddyinfo_file, pagetypeinfo_file,
                             preset, k, cpus) for k in kernels]
    tracers = [_tracer() if trace else None for _ in runs]
    sims = []
    for (m, info), tracer in zip(runs, tracers, strict=True):
        try:
            sims.append(Simulation(m, workload, seed, tracer=tracer, machine_info=info))
        except WorkloadError as e:
            fail(str(e))
    if out_dir:
        make_dir(out_dir)  # before the (long) runs: an --out that cannot be made fails now
    with make_pool(jobs, scheduler) as pool:
        if isinstance(pool, SerialPool):
            results = _run_all(sims)  # with the progress bars
        else:
            source = (zoneinfo_file, buddyinfo_file, pagetypeinfo_file, preset)
            results = pool.map(simulate_job, [(workload, source, s.m.kernel.name, cpus,
                                               None, seed, trace) for s in sims])
    out = Path(out_dir) if out_dir else None
    if out is not None:
        can_plot = plots_available()
        for r, sim in zip(results, sims, strict=True):
            where = out if len(results) == 1 else out / r.kernel
            write_results(r, where / RESULTS_NAME)
            if r.tracer is not None:
                _write_traces(r, sim.m, where)
            if can_plot:
                for note in write_plots(to_json(r), where).skipped:
                    click.echo(f"pagesim: plot: skipped {note}", err=True)
            _write_report(r, where)
        if not can_plot:
            click.echo(f"pagesim: plots skipped: matplotlib is not installed ({INSTALL_HINT})",
                       err=True)
    if as_json:
        docs = [to_json(r) for r in results]
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1, sort_keys=True))
    else:
        click.echo(render_summary(results, workload), nl=False)
        if out is not None:
            click.echo(f"results in {out}/")
    if any(r.violation is not None for r in results):
        sys.exit(1)


#: --zoneinfo, --buddyinfo, --pagetypeinfo, --preset: where a workload's machine comes from
MachineSource = tuple[str | None, str | None, str | None, str | None]


def simulate_job(job: tuple[Workload, MachineSource, str, int | None, Sysctl | None, int,
                            bool]) -> SimResult:
    """One run of ``simulate`` or one configuration of ``compare --workload``, built and
    run where the pool runs it (the machine is rebuilt there rather than shipped: a
    16 GiB one is 70 MB); with ``trace``, its tracer comes back with the result. A
    module-level function of plain data, so that a process or a Dask worker can run
    it."""
    w, source, kern, cpus, sysctl, seed, trace = job
    m, info = workload_machine(w, *source, kernel_of(kern), cpus)
    apply_sysctl(m, sysctl)
    if sysctl is not None:
        info["sysctl"] = {sysctl.name: sysctl.value}
    return Simulation(m, w, seed, tracer=_tracer() if trace else None,
                      machine_info=info).run()


def workload_machine(workload: Workload, zoneinfo_file: str | None,
                     buddyinfo_file: str | None, pagetypeinfo_file: str | None,
                     preset: str | None, k: Kernel | None,
                     cpus: int | None) -> tuple[Machine, dict[str, Any]]:
    """The machine a workload runs on, and what the results file says about it: the
    /proc files or the preset of the command line, else the workload's ``[machine]``,
    else the demo's preset. The CPU count is ``--cpus``, else the workload's ``cpus``,
    else the machine's (for a ``[machine]``: enough for every CPU the workload names)."""
    from pagesim.cli.main import build_from_options, fail

    n = cpus if cpus is not None else workload.cpus
    spec = workload.machine
    if zoneinfo_file or preset or spec is None:
        if not zoneinfo_file and not preset:
            preset = DEMO_PRESET
        m = build_from_options(zoneinfo_file, buddyinfo_file, pagetypeinfo_file, preset,
                               k.name if k is not None else None, n)
        source = f"zoneinfo {zoneinfo_file}" if zoneinfo_file else f"preset {preset}"
        return m, machine_info(m, source)
    if buddyinfo_file or pagetypeinfo_file:
        fail("--buddyinfo and --pagetypeinfo complete a --zoneinfo; give --zoneinfo too")
    name = k.name if k is not None else DEMO_KERNELS[-1]
    m = spec.build(name, n if n is not None else workload.named_cpus())
    return m, machine_info(m, f"workload {workload.source} [machine]")


def machine_info(m: Machine, source: str) -> dict[str, Any]:
    """What the results file says about the machine."""
    return {"source": source, "kernel": m.kernel.name, "nr_cpus": m.nr_cpus,
            "zones": [{"name": z.name, "start_pfn": z.zone_start_pfn,
                       "spanned": z.spanned_pages, "present": z.present_pages,
                       "managed": z.managed_pages} for z in m.zones if z.present_pages]}


def _tracer() -> Any:
    from pagesim.trace.events import Tracer
    return Tracer()


def _write_traces(r: SimResult, m: Machine, where: Path) -> None:
    from pagesim.trace.ftrace import TraceFormat, write_ftrace
    from pagesim.trace.perfetto import write_perfetto
    tracer = r.tracer
    events = tracer.events
    write_ftrace(where / "trace.txt", events, TraceFormat.of(m.kernel, m.geom.cma),
                 m.nr_cpus)
    write_perfetto(where / "trace.json", events, tracer.spans, nr_cpus=m.nr_cpus,
                   process_name=f"pagesim simulate ({m.kernel.name})")


def _write_report(r: SimResult, where: Path) -> None:
    """``report.html``: the HTML trace explorer of the run (:mod:`pagesim.report`), from
    the results and the live tracer, the same page ``pagesim report DIR`` makes later."""
    from pagesim.report import write_report
    from pagesim.report.sources import REPORT_NAME, simulation_report
    write_report(where / REPORT_NAME,
                 simulation_report(to_json(r), r.tracer, str(where / RESULTS_NAME)))


def _run_all(sims: list[Simulation]) -> list[SimResult]:
    """Run each simulation, with a progress bar per generation on a terminal."""
    if not sys.stderr.isatty():
        return [s.run() for s in sims]
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    out = []
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:>9,} / {task.total:,} steps"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        for s in sims:
            task = bar.add_task(f"{s.m.kernel.name:>6}", total=s.w.duration)

            def update(now: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=now, total=total)
            s.progress = update
            out.append(s.run())
    return out


# =======================================================================================
# The summary table


def _fmt(n: float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:,.1f}"


def summary_rows(r: SimResult) -> list[tuple[str, str]]:
    """The table's rows for one run: (label, value)."""
    s = summary(r)
    rows = [
        ("page operations (allocs / frees)",
         f"{_fmt(s['page_ops'])} ({_fmt(s['allocs'])} / {_fmt(s['frees'])})"),
        ("  failed allocations", _fmt(s["failed_allocs"])),
        ("  run step by step (preempted)", _fmt(s["stepped_ops"])),
        ("simulated steps (runtime steps)", f"{_fmt(r.steps)} ({_fmt(s['runtime_steps'])})"),
        ("pages on pcplists (mean / max)",
         f"{_fmt(s['pcp_pages_mean'])} / {_fmt(s['pcp_pages_max'])}"),
        ("drain_all_pages calls / remote drains",
         f"{_fmt(s['drains'])} / {_fmt(s['remote_drains'])}"),
    ]
    for e in r.events:
        if e.op == "offline":
            if e.ret is None:
                what = e.reason or "did not run"
            elif e.ret == 0:
                what = "offlined"
            elif e.gave_up:
                what = f"gave up after {e.retries} retries"
            else:
                what = f"failed {e.ret} ({e.reason})"
            blk = f"block {e.block}" if e.block is not None else "block ?"
            rows.append((f"offline of {blk} (cpu{e.cpu}, step {e.at:,})", what))
            rows.append(("  retries / duration in steps",
                         f"{_fmt(e.retries)} / {_fmt(e.duration) if e.duration >= 0 else '-'}"))
        elif e.op in ("online", "alloc_contig", "free_contig"):
            what = "-" if e.ret is None else ("ok" if e.ret == 0 else f"failed {e.ret}")
            rows.append((f"{e.op} (cpu{e.cpu}, step {e.at:,})", f"{what}, "
                         f"{_fmt(e.duration) if e.duration >= 0 else '-'} steps"))
    rows += [
        ("migrations", _fmt(s["migrations"])),
        ("pages handed out from isolated blocks", _fmt(s["isolated_allocs"])),
        ("isolated pages on pcplists (max sampled)", _fmt(max(r.samples["isolated_on_pcp"],
                                                              default=0))),
        ("contiguous-allocation failures", _fmt(s["contig_failures"])),
        ("invariant checks passed", _fmt(s["invariant_checks_passed"])),
        ("violation", "none" if r.violation is None else
         f"{r.violation['property']}: {r.violation['message']}"),
        ("wall seconds (page operations/s)",
         f"{r.wall_seconds:.1f} ({_fmt(int(s['page_ops'] / max(r.wall_seconds, 1e-9)))})"),
    ]
    return rows


def render_summary(results: list[SimResult], workload: Workload) -> str:
    """The summary table, one column per run, as text (colour only on a terminal)."""
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"pagesim simulate: {workload.name} on "
                        f"{results[0].machine.get('source', 'machine')}, "
                        f"{results[0].nr_cpus} CPUs, seed {results[0].seed}")
    table.add_column("", no_wrap=True)
    for r in results:
        table.add_column(r.kernel, justify="right")
    per_run = [summary_rows(r) for r in results]
    labels = list(dict.fromkeys(label for rows in per_run for label, _ in rows))
    for label in labels:
        cells = []
        for rows in per_run:
            found = dict(rows)
            cells.append(found.get(label, "-"))
        table.add_row(label, *cells)
    console = Console(width=48 + 31 * len(results), record=True,
                      force_terminal=False, file=io.StringIO())
    console.print(table)
    return console.export_text()
