# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim scenarios``, ``pagesim check`` and ``pagesim replay``.

A counterexample leaves ``check`` in two forms: a schedule file (``--save``), which
names the scenario, kernel and CPU count it was found on so that ``pagesim replay`` can
rebuild the program and re-run it step by step; and a Python reproducer
(``--reproducer``), which does the same through the public API alone, so it can be
attached to a bug report and run without the command line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from pagesim.cli.options import pool_options
from pagesim.explore import SAMPLED, STRATEGIES, check, format_trace, merge_results, split_bounds
from pagesim.explore.common import VIOLATION, Bounds, Result
from pagesim.model.kernels import NEWEST
from pagesim.model.kernels import kernel as kernel_of
from pagesim.runtime.executor import (
    Execution,
    Replay,
    Schedule,
    ScheduleError,
    StepRecord,
    replay,
)
from pagesim.scale import SerialPool, make_pool
from pagesim.scenarios import resolve, scenarios
from pagesim.scenarios.allocator import AllocState
from pagesim.trace._files import read_text, write_text_atomic

DEFAULT_KERNEL = f"v{NEWEST[0]}.{NEWEST[1]}"
COUNTEREXAMPLE_FORMAT = "pagesim-counterexample"


class BadCounterexample(ValueError):
    """A counterexample file that is not one, or is truncated."""


class _Progress:
    """Executions and elapsed time on stderr, once a second, only on a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last = self.start
        self.count = 0
        self.shown = False

    def __call__(self, ex: Execution) -> None:
        self.count += 1
        now = time.perf_counter()
        if self.enabled and now - self.last >= 1.0:
            self.last = now
            self.shown = True
            sys.stderr.write(f"\r{self.count} executions, {now - self.start:.0f}s ...")
            sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 40 + "\r")
            sys.stderr.flush()


def check_job(job: tuple[str, str, int | None, Bounds]) -> Result:
    """One check run where a pool runs it: the scenario's program for one generation,
    searched as ``bounds`` say (a row of ``compare``, or one part of a split random or
    PCT search with its seed and share of the executions). Module-level and plain data,
    so a process or a Dask worker runs it."""
    scenario, kern, cpus, bounds = job
    return check(resolve(scenario).program(kern, cpus), bounds=bounds)


def counterexample_json(scenario: str, kernel: str, cpus: int, result: Result,
                        scenario_file: str | None = None) -> str:
    """The schedule file: what to rebuild (a scenario read from a file is rebuilt from
    ``scenario_file``, its absolute path), and the schedule that fails on it."""
    assert result.schedule is not None
    return json.dumps({
        "format": COUNTEREXAMPLE_FORMAT, "version": 1, "scenario": scenario,
        **({"scenario_file": scenario_file} if scenario_file else {}),
        "kernel": kernel, "cpus": cpus, "property": result.property,
        "message": result.message,
        "schedule": [[t, c] for t, c in result.schedule.steps]}, indent=1) + "\n"


def load_counterexample(text: str) -> tuple[str, str, int, Schedule]:
    """(scenario, kernel, cpus, schedule) of a schedule file; bad input raises. The
    scenario is its file's path when it came from one (for ``resolve``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadCounterexample(f"not a pagesim counterexample (bad JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != COUNTEREXAMPLE_FORMAT:
        raise BadCounterexample("not a pagesim counterexample")
    if data.get("version") != 1:
        raise BadCounterexample(f"unsupported counterexample version {data.get('version')!r}")
    scenario, kern, cpus = data.get("scenario"), data.get("kernel"), data.get("cpus")
    if not isinstance(scenario, str) or not isinstance(kern, str) or not isinstance(cpus, int):
        raise BadCounterexample("counterexample lacks scenario, kernel or cpus")
    if "scenario_file" in data:
        if not isinstance(data["scenario_file"], str):
            raise BadCounterexample("counterexample's scenario_file is not a path")
        scenario = data["scenario_file"]
    steps = data.get("schedule")
    if not isinstance(steps, list):
        raise BadCounterexample("counterexample lacks its schedule")
    try:
        schedule = Schedule.from_json(json.dumps({"format": "pagesim-schedule", "version": 1,
                                                  "program": scenario, "steps": steps}))
    except ScheduleError as e:
        raise BadCounterexample(str(e)) from None
    return scenario, kern, cpus, schedule


REPRODUCER = '''\
# SPDX-License-Identifier: GPL-2.0-only
"""Reproducer written by `pagesim check`: {scenario} on {kernel}, {cpus} CPUs.

Expected: {prop}: {message}
Run: python {filename}   (exits 1 when the violation reproduces)
"""

import sys

from pagesim.explore import format_trace
from pagesim.runtime.executor import Schedule, replay
from pagesim.scenarios import program

STEPS = {steps!r}

result = replay(program({scenario!r}, {kernel!r}, {cpus!r}), Schedule(tuple(STEPS)))
print(format_trace(result.records))
if result.violation is None:
    print("did not reproduce: the execution ends without a violation")
    sys.exit(0)
print(f"violation: {{result.violation.property}}: {{result.violation.message}}")
sys.exit(1)
'''


def reproducer(scenario: str, kernel: str, cpus: int, result: Result, filename: str) -> str:
    """A runnable script that rebuilds the failure with the public API."""
    assert result.schedule is not None
    return REPRODUCER.format(scenario=scenario, kernel=kernel, cpus=cpus,
                             prop=result.property, message=result.message,
                             filename=Path(filename).name,
                             steps=[tuple(s) for s in result.schedule.steps])


def _state_summary(state: Any) -> str:
    """The allocator state a step may change: pcp counts and zone free pages."""
    if not isinstance(state, AllocState):
        return ""
    counts = " ".join(f"pcp{c}={p.count}" for c, p in enumerate(state.zone.per_cpu_pageset))
    return f"{counts} free={state.zone.nr_free_pages}"


def _fact(value: object) -> str:
    """A snapshot value as replay prints it: lists of pfns in brackets, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def replay_json(scenario: str, kernel: str, cpus: int, result: Replay) -> str:
    """A replay as one JSON object: the state before the first step, then every step
    with its call chain, op, value and the facts it changed ([name, before, after])."""
    v = result.violation
    return json.dumps({
        "scenario": scenario, "kernel": kernel, "cpus": cpus,
        "initial": result.initial,
        "steps": [
            {"step": r.index, "thread": r.tid, "cpu": r.cpu, "op": r.op, "value": r.value,
             "choice": r.choice, "preemption": r.preemption,
             "chain": [[fn, line] for fn, line in r.chain],
             "changes": [[name, before, after] for name, before, after in r.changes]}
            for r in result.records],
        "violation": (None if v is None else
                      {"step": v.step, "property": v.property, "message": v.message,
                       "thread": v.tid}),
        "finished": result.finished}, indent=1, default=str)


def _step_line(r: StepRecord) -> str:
    value = f" -> {r.value}" if r.value else ""
    mark = "* " if r.preemption else ""
    return f"{r.index:4} {mark}{r.tid} (cpu{r.cpu}) {r.op}{value}  [{r.where()}]"


def add_commands(cli: click.Group) -> None:
    """Register the commands on the ``pagesim`` group (main.py owns the group)."""

    @cli.command("scenarios")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    def scenarios_cmd(as_json: bool) -> None:
        """List the built-in scenarios for `pagesim check`."""
        items = scenarios()
        if as_json:
            click.echo(json.dumps([
                {"name": s.name, "description": s.description, "expected": s.expected,
                 "uses_kernel": s.uses_kernel, "min_cpus": s.min_cpus,
                 "max_cpus": s.max_cpus, "default_cpus": s.default_cpus}
                for s in items], indent=2))
            return
        w = max(len(s.name) for s in items)
        click.echo("\n".join(f"{s.name:<{w}}  [{s.expected}] {s.description}"
                             for s in items))

    @cli.command("check")
    @click.argument("scenario")
    @click.option("--kernel", "kernel_name", default=None,
                  help="the generation to check, v5.8 ... v6.19 (default: the "
                  f"scenario file's, else {DEFAULT_KERNEL})")
    @click.option("--cpus", type=int, default=None, help="CPU count (default: the scenario's)")
    @click.option("--strategy", default="dpor", show_default=True,
                  help=f"one of {', '.join(STRATEGIES)}; dpor and stateful (which "
                  "also cuts revisited states) are exhaustive")
    @click.option("--seed", type=click.IntRange(min=0), default=None,
                  help="seed of random and pct")
    @click.option("--max-executions", type=int, default=None, help="stop after N executions")
    @click.option("--max-steps", type=int, default=None, help="steps per execution")
    @click.option("--json", "as_json", is_flag=True, help="print one JSON object")
    @click.option("--save", "save", default=None, help="write the counterexample's schedule "
                  "here (for `pagesim replay`)")
    @click.option("--reproducer", "repro", default=None,
                  help="write a runnable Python reproducer of the counterexample here")
    @pool_options("the parts of a random or pct search (seeds SEED, SEED+1, ...)")
    def check_cmd(scenario: str, kernel_name: str | None, cpus: int | None, strategy: str,
                  seed: int | None, max_executions: int | None, max_steps: int | None,
                  as_json: bool, save: str | None, repro: str | None, jobs: int | None,
                  scheduler: str | None) -> None:
        """Explore every interleaving of SCENARIO, a built-in name or a scenario file
        (FILE.toml), or a sample of them with random/pct/bounded.

        Exit status: 0 no violation, 1 a violation, 2 bad input."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
        for name, v in (("--max-executions", max_executions), ("--max-steps", max_steps)):
            if v is not None and v < 1:
                raise ValueError(f"{name} must be at least 1, not {v}")
        sc = resolve(scenario)
        kern = kernel_of(kernel_name or sc.default_kernel or DEFAULT_KERNEL).name
        n = sc.default_cpus if cpus is None else cpus
        prog = sc.program(kern, n)
        if (jobs is not None or scheduler is not None) and strategy not in SAMPLED:
            raise ValueError(f"--jobs and --scheduler split a sampled search "
                             f"({', '.join(SAMPLED)}); {strategy} is one search")
        # only a sampled search is split: the exhaustive ones never reach for a pool
        with make_pool(jobs, scheduler) if strategy in SAMPLED else SerialPool() as pool:
            if not isinstance(pool, SerialPool):
                bounds = Bounds.from_env(strategy=strategy, seed=seed,
                                         max_executions=max_executions,
                                         max_steps=max_steps)
                parts = split_bounds(bounds, pool.width)
                result = merge_results(pool.map(
                    check_job, [(sc.source or sc.name, kern, n, b) for b in parts]))
            else:
                progress = _Progress()
                try:
                    bounds = Bounds.from_env(on_execution=progress)
                    result = check(prog, strategy, bounds=bounds, seed=seed,
                                   max_executions=max_executions, max_steps=max_steps)
                finally:
                    progress.done()
        found = result.verdict == VIOLATION
        notes: list[str] = []
        if found and save:
            write_text_atomic(save, counterexample_json(sc.name, kern, n, result, sc.source))
            notes.append(f"schedule saved to {save} (replay it: pagesim replay {save})")
        if found and repro:
            write_text_atomic(repro, reproducer(sc.source or sc.name, kern, n, result, repro))
            notes.append(f"reproducer written to {repro} (run it: python {repro})")
        if found and not save:
            notes.append("pass --save FILE to keep the schedule for `pagesim replay`")
        if as_json:
            data = result.to_json()
            data.update({"scenario": sc.name, "kernel": kern, "cpus": n})
            click.echo(json.dumps(data, indent=2))
        else:
            lines = [
                f"scenario:   {sc.name} ({kern if sc.uses_kernel else 'any kernel'}, "
                f"{n} CPUs)",
                f"verdict:    {result.verdict}",
                f"complete:   {'yes' if result.complete else 'no'} ({result.strategy})",
                f"executions: {result.executions} ({result.pruned} pruned)",
                *([f"states:     {result.distinct_states}"]
                  if result.distinct_states is not None else []),
                f"seconds:    {result.seconds:.3f}",
            ]
            if found:
                lines.append(f"property:   {result.property}: {result.message}")
                lines.append("")
                lines.append(format_trace(result.trace))
            lines.extend(notes)
            click.echo("\n".join(lines))
        sys.exit(1 if found else 0)

    @cli.command("replay")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--json", "as_json", is_flag=True,
                  help="print JSON: every step with its state changes")
    def replay_cmd(file: str, as_json: bool) -> None:
        """Re-run a saved counterexample step by step, with the state changes of each
        step.

        Exit status: 1 when the violation reproduces, 0 when it does not."""
        try:
            scenario, kern, cpus, schedule = load_counterexample(read_text(file))
            prog = resolve(scenario).program(kernel_of(kern).name, cpus)
        except ValueError as e:  # what the file says is wrong: name the file
            msg = str(e)
            raise BadCounterexample(msg if msg.startswith(f"{file}:") else f"{file}: {msg}") \
                from None
        except OSError as e:  # its scenario file
            raise BadCounterexample(f"{file}: its scenario file {e.filename}: "
                                    f"{e.strerror}") from None
        lines = [f"replaying {scenario} ({kern}, {cpus} CPUs), {len(schedule)} steps"]
        last = ""

        def on_step(r: StepRecord, state: Any) -> None:
            nonlocal last
            lines.append(_step_line(r))
            lines.extend(f"       {name}: {_fact(before)} -> {_fact(after)}"
                         for name, before, after in r.changes)
            now = _state_summary(state)
            if now and now != last:
                lines.append(f"       state: {now}")
                last = now

        try:
            result = replay(prog, schedule, on_step=on_step)
        except ScheduleError as e:
            raise BadCounterexample(f"{file}: does not fit {scenario}: {e}") from None
        if as_json:
            click.echo(replay_json(scenario, kern, cpus, result))
            sys.exit(0 if result.violation is None else 1)
        if result.violation is None:
            lines.append("no violation: the schedule does not reproduce one")
            click.echo("\n".join(lines))
            sys.exit(0)
        v = result.violation
        lines.append(f"violation at step {v.step}: {v.property}: {v.message}")
        click.echo("\n".join(lines))
        sys.exit(1)
