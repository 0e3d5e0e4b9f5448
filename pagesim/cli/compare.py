# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim compare``: one scenario, checked on several kernel generations, one table;
or one simulator workload run on several generations or pcp settings.

The question it answers is the project's: which generations have the race, and which
fix closes it. Each kernel gets its own ``check`` run (a fresh program, the same
strategy and bounds), so a row reads exactly like ``pagesim check SCENARIO --kernel K``.
With ``--workload`` the checker's verdict becomes the simulator's figures: each
configuration (a generation, and optionally a value of a pcp sysctl) runs the same
workload with the same seed on a machine built the same way (:mod:`pagesim.sim.compare`),
and ``--out`` receives the table as JSON, one plot of all of them, and each run's
results file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pagesim.cli.check import check_job
from pagesim.cli.options import pool_options
from pagesim.explore import STRATEGIES
from pagesim.explore.common import Bounds, Result
from pagesim.model.kernels import kernel as kernel_of
from pagesim.scale import Pool, SerialPool, make_pool
from pagesim.scenarios import resolve
from pagesim.sim.compare import Config, Sysctl, apply_sysctl, check_config, parse_sysctl
from pagesim.sim.compare import format_table as format_workload_table
from pagesim.sim.compare import row as workload_row
from pagesim.sim.demo import DEMO_KERNELS, DEMO_PRESET, DEMO_SEED, resolve_workload
from pagesim.sim.runner import Simulation
from pagesim.sim.workload import MAX_CPUS
from pagesim.trace._files import make_dir

DEFAULT_KERNELS = "v5.8,v5.10,v5.11,v5.11-unforced,v6.0,v6.11,v6.19"

#: the file ``--out`` gets the table in (besides the plot and each run's results)
TABLE_NAME = "compare.json"


@dataclass
class Row:
    kernel: str
    result: Result

    def cells(self) -> list[str]:
        r = self.result
        length = "" if r.schedule is None else str(len(r.schedule))
        what = "" if r.property is None else f"{r.property}: {r.message or ''}"
        found = "" if r.seconds_to_find is None else f"{r.seconds_to_find:.2f}"
        return [self.kernel, r.verdict, "yes" if r.complete else "no", str(r.executions),
                f"{r.seconds:.1f}", found, length, what]


HEADER = ["kernel", "verdict", "complete", "executions", "seconds", "found in", "steps",
          "property"]


def compare(scenario: str, kernels: list[str], cpus: int | None, strategy: str,
            bounds: Bounds, pool: Pool | None = None) -> list[Row]:
    """Check ``scenario`` (a name or a scenario file) on every kernel of ``kernels``;
    the rows in that order, wherever ``pool`` runs them (here by default)."""
    names = [kernel_of(name).name for name in kernels]
    b = bounds.but(strategy=strategy)
    jobs = [(scenario, kern, cpus, b) for kern in names]
    results = (pool or SerialPool()).map(check_job, jobs)
    return [Row(kern, r) for kern, r in zip(names, results, strict=True)]


def format_table(rows: list[Row], width: int = 70) -> str:
    """A plain-text table (the property column cut at ``width`` characters)."""
    cells = [HEADER] + [r.cells() for r in rows]
    cells = [[*c[:-1], c[-1][:width]] for c in cells]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = []
    for i, row in enumerate(cells):
        lines.append("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_commands(cli: click.Group) -> None:
    @cli.command("compare")
    @click.argument("scenario", required=False)
    @click.option("--workload", "workload", default=None,
                  help="instead of SCENARIO: a simulator workload (FILE.toml or a "
                       "built-in name, e.g. offline-under-load)")
    @click.option("--kernels", default=None,
                  help="comma-separated generations or variants (see `pagesim kernels`; "
                       f"default: {DEFAULT_KERNELS} for a scenario, "
                       f"{','.join(DEMO_KERNELS)} for a workload)")
    @click.option("--cpus", type=int, default=None,
                  help="CPU count (default: the scenario's, the workload's or the "
                       "machine's)")
    @click.option("--strategy", default=None,
                  help=f"scenario: one of {', '.join(STRATEGIES)} (default dpor)")
    @click.option("--max-executions", type=int, default=None,
                  help="scenario: stop each check after N executions")
    @click.option("--time-limit", type=float, default=None,
                  help="scenario: stop each check after this many seconds")
    @click.option("--preset", default=None,
                  help=f"workload: a built-in machine (default: the workload's [machine], "
                       f"else {DEMO_PRESET})")
    @click.option("--zoneinfo", "--from", "zoneinfo_file", default=None,
                  type=click.Path(dir_okay=False),
                  help="workload: a /proc/zoneinfo to build the machine from")
    @click.option("--buddyinfo", "buddyinfo_file", default=None,
                  type=click.Path(dir_okay=False), help="workload: its /proc/buddyinfo")
    @click.option("--pagetypeinfo", "pagetypeinfo_file", default=None,
                  type=click.Path(dir_okay=False), help="workload: its /proc/pagetypeinfo")
    @click.option("--sysctl", "sysctl", default=None,
                  help="workload: vary a pcp sysctl, NAME=V1,V2,... (each generation runs "
                       "once per value): percpu_pagelist_fraction (5.8-5.13) or "
                       "percpu_pagelist_high_fraction (5.14+)")
    @click.option("--seed", type=click.IntRange(min=0), default=None,
                  help=f"workload: seed of the scheduler's choices (default {DEMO_SEED})")
    @click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
                  help=f"workload: directory for {TABLE_NAME}, the plot and each run's "
                       "results")
    @click.option("--json", "as_json", is_flag=True, help="print a JSON list")
    @pool_options("the rows")
    def compare_cmd(scenario: str | None, workload: str | None, kernels: str | None,
                    cpus: int | None, strategy: str | None, max_executions: int | None,
                    time_limit: float | None, preset: str | None,
                    zoneinfo_file: str | None, buddyinfo_file: str | None,
                    pagetypeinfo_file: str | None, sysctl: str | None, seed: int | None,
                    out_dir: str | None, as_json: bool, jobs: int | None,
                    scheduler: str | None) -> None:
        """Check SCENARIO (a built-in name or a scenario file, FILE.toml) on each of
        several kernel generations and print one table
        (verdict, executions, time, counterexample length).

        With --workload instead of SCENARIO, run that simulator workload with the same
        seed on each generation (and each value of --sysctl) and print one table
        (page operations, pages on pcplists, drains, offline retries and duration,
        migrations, pages handed out from isolated blocks, contiguous-allocation
        failures, invariant checks, wall time); --out DIR also gets it as JSON, one
        plot of all the runs (PNG and SVG) and each run's results.json.

        Exit status: 0 when every check ran (whatever it found), 2 on bad input; with
        --workload, 1 if the model failed under the workload in some run."""
        workload_only = {"--preset": preset, "--zoneinfo": zoneinfo_file,
                         "--buddyinfo": buddyinfo_file, "--pagetypeinfo": pagetypeinfo_file,
                         "--sysctl": sysctl, "--seed": seed, "--out": out_dir}
        if workload is not None:
            if scenario is not None:
                raise ValueError(f"give a scenario ({scenario}) or --workload, not both")
            for opt, v in (("--strategy", strategy), ("--max-executions", max_executions),
                           ("--time-limit", time_limit)):
                if v is not None:
                    raise ValueError(f"{opt} applies to a scenario, not to --workload")
            compare_workload(workload, kernels, cpus, preset, zoneinfo_file, buddyinfo_file,
                             pagetypeinfo_file, sysctl, DEMO_SEED if seed is None else seed,
                             out_dir, as_json, jobs, scheduler)
            return
        if scenario is None:
            raise ValueError("give a SCENARIO to check, or --workload FILE|NAME to simulate")
        for opt, v in workload_only.items():
            if v is not None:
                raise ValueError(f"{opt} applies to --workload, not to a scenario")
        strategy = strategy or "dpor"
        kernels = kernels or DEFAULT_KERNELS
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
        for opt, v in (("--max-executions", max_executions), ("--time-limit", time_limit)):
            if v is not None and not v > 0:  # NaN too
                raise ValueError(f"{opt} must be positive, not {v}")
        names = [k.strip() for k in kernels.split(",") if k.strip()]
        if not names:
            raise ValueError("--kernels lists no kernel")
        sc = resolve(scenario)
        seen: set[str] = set()
        for name in names:
            kern = kernel_of(name).name  # every name is checked before the first (long) run
            if kern in seen:
                raise ValueError(f"--kernels: {kern} is given twice")
            seen.add(kern)
        sc.program(kernel_of(names[0]).name, cpus)  # and the CPU count
        bounds = Bounds.from_env().but(max_executions=max_executions, time_limit=time_limit)
        with make_pool(jobs, scheduler) as pool:
            if sys.stderr.isatty():
                click.echo(f"checking {sc.name} on {len(names)} kernels in "
                           f"{pool.describe()} ...", err=True)
            rows = compare(sc.source or sc.name, names, cpus, strategy, bounds, pool)
        if as_json:
            click.echo(json.dumps([
                {"kernel": r.kernel, "verdict": r.result.verdict,
                 "complete": r.result.complete, "executions": r.result.executions,
                 "seconds": round(r.result.seconds, 3),
                 "seconds_to_find": (None if r.result.seconds_to_find is None
                                     else round(r.result.seconds_to_find, 3)),
                 "property": r.result.property,
                 "message": r.result.message,
                 "steps": None if r.result.schedule is None else len(r.result.schedule)}
                for r in rows], indent=2))
            return
        n = sc.default_cpus if cpus is None else cpus
        click.echo(f"{sc.name}, {n} CPUs, strategy {strategy}\n")
        click.echo(format_table(rows))


def compare_workload(workload_name: str, kernels: str | None, cpus: int | None,
                     preset: str | None, zoneinfo_file: str | None,
                     buddyinfo_file: str | None, pagetypeinfo_file: str | None,
                     sysctl: str | None, seed: int, out_dir: str | None,
                     as_json: bool, jobs: int | None = None,
                     scheduler: str | None = None) -> None:
    """``pagesim compare --workload``: every input is checked and every machine built
    before the first (long) run; with a pool, the runs (machines rebuilt) go there."""
    from pagesim.cli.simulate import _run_all, simulate_job, workload_machine

    if cpus is not None and not 1 <= cpus <= MAX_CPUS:
        raise ValueError(f"--cpus must be 1..{MAX_CPUS}, not {cpus}")
    if zoneinfo_file and preset:
        raise ValueError("--zoneinfo and --preset are alternatives; give one")
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"{out_dir}: not a directory")
    w = resolve_workload(workload_name)
    if kernels is not None:
        names = [k.strip() for k in kernels.split(",") if k.strip()]
        if not names:
            raise ValueError("--kernels lists no kernel")
    else:
        names = list(DEMO_KERNELS)
    gens = [kernel_of(n) for n in names]
    values: list[Sysctl | None] = list(parse_sysctl(sysctl)) if sysctl else [None]
    configs = [Config(k.name, v) for k in gens for v in values]
    if len({c.label for c in configs}) != len(configs):
        raise ValueError("--kernels: a generation is given twice")
    for k in gens:
        for v in values:
            check_config(k, v)
    sims = []
    for c, k in zip(configs, (k for k in gens for _ in values), strict=True):
        m, info = workload_machine(w, zoneinfo_file, buddyinfo_file, pagetypeinfo_file,
                                   preset, k, cpus)
        apply_sysctl(m, c.sysctl)
        if c.sysctl is not None:
            info["sysctl"] = {c.sysctl.name: c.sysctl.value}
        sims.append(Simulation(m, w, seed, machine_info=info))
    if out_dir is not None:
        make_dir(out_dir)  # before the (long) runs
    with make_pool(jobs, scheduler) as pool:
        if isinstance(pool, SerialPool):
            results = _run_all(sims)  # with the progress bars
        else:
            del sims, m, info  # the runs rebuild their machines: free these first
            source = (zoneinfo_file, buddyinfo_file, pagetypeinfo_file, preset)
            results = pool.map(simulate_job, [(w, source, c.kernel, cpus, c.sysctl, seed,
                                               False) for c in configs])
    rows = [workload_row(c, r) for c, r in zip(configs, results, strict=True)]
    if out_dir is not None:
        _write_outputs(Path(out_dir), configs, results, rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        r0 = results[0]
        click.echo(f"{w.name} on {r0.machine.get('source', 'machine')}, {r0.nr_cpus} CPUs, "
                   f"seed {seed}\n")
        click.echo(format_workload_table(rows), nl=False)
        if out_dir is not None:
            click.echo(f"results in {out_dir}/")
    if any(r.violation is not None for r in results):
        sys.exit(1)


def _write_outputs(out: Path, configs: list[Config], results: list[Any],
                   rows: list[dict[str, Any]]) -> None:
    """The table as JSON, each run's results file, and the comparison plot (when
    matplotlib is there): each file whole or not at all."""
    from pagesim.sim.plots import INSTALL_HINT, plots_available, write_compare_plot
    from pagesim.sim.results import RESULTS_NAME, to_json, write_atomic, write_results

    docs = []
    for c, r in zip(configs, results, strict=True):
        write_results(r, out / c.slug / RESULTS_NAME)
        docs.append((c.label, to_json(r)))
    write_atomic(out / TABLE_NAME, json.dumps(rows, indent=2) + "\n")
    if plots_available():
        for note in write_compare_plot(docs, out).skipped:
            click.echo(f"pagesim: plot: skipped {note}", err=True)
    else:
        click.echo(f"pagesim: plot skipped: matplotlib is not installed ({INSTALL_HINT})",
                   err=True)
