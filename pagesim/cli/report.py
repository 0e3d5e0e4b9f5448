# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim report INPUT -o OUT.html``: the HTML trace explorer of a counterexample or
a simulation.

INPUT is what the other commands leave behind: a counterexample file of ``pagesim check
--save`` (of a built-in scenario or a scenario file), or a simulation's results (the
``--out`` directory of ``pagesim simulate``, or its ``results.json``, with the traces
beside it when the run was traced). A counterexample is replayed exactly as ``pagesim
replay --json`` replays it and the page shows that data; nothing is re-derived.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pagesim.cli.check import BadCounterexample, load_counterexample, replay_json
from pagesim.model.kernels import kernel as kernel_of
from pagesim.report.data import ReportError, counterexample_document
from pagesim.report.html import write_report
from pagesim.report.sources import REPORT_NAME, simulation_report_from_files
from pagesim.runtime.executor import ScheduleError, replay
from pagesim.scenarios import resolve
from pagesim.trace._files import read_text

RESULTS_FORMAT = "pagesim-sim-results"


def counterexample_report(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Replay the counterexample file at ``path`` (already parsed as ``data``) and build
    its report document."""
    try:
        scenario, kern, cpus, schedule = load_counterexample(json.dumps(data))
    except BadCounterexample as e:
        raise ReportError(f"{path}: {e}") from None
    try:
        prog = resolve(scenario).program(kernel_of(kern).name, cpus)
    except FileNotFoundError:
        raise ReportError(f"{path}: its scenario file {scenario} does not exist") from None
    except OSError as e:
        raise ReportError(f"{path}: its scenario file {scenario}: {e.strerror}") from None
    except ValueError as e:  # an unknown scenario or kernel, a CPU count it cannot run
        raise ReportError(f"{path}: {e}") from None
    try:
        result = replay(prog, schedule)
    except ScheduleError as e:
        raise ReportError(f"{path}: does not fit {scenario}: {e}") from None
    rep = json.loads(replay_json(scenario, kern, cpus, result))
    return counterexample_document(rep, source=str(path), saved=data)


def _results_path(path: Path) -> Path:
    """The results file INPUT names: itself, or the results.json of a directory."""
    if not path.is_dir():
        return path
    found = path / "results.json"
    if found.is_file():
        return found
    runs = sorted(p.parent.name for p in path.glob("*/results.json"))
    if runs:
        raise ReportError(f"{path}: holds one run per kernel ({', '.join(runs)}); give one "
                          f"of them, e.g. {path / runs[0]}")
    raise ReportError(f"{path}: no results.json here (not a pagesim simulate --out "
                      "directory)")


def build_document(input_path: str, max_events: int | None = None) -> dict[str, Any]:
    """The report document of INPUT, whichever kind it is; bad input raises a
    :class:`ValueError` whose message names the file and the problem."""
    path = _results_path(Path(input_path))
    if not path.exists():
        raise ReportError(f"{path}: no such file")
    text = read_text(path)  # not text: an error naming the file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if path.suffix == ".toml":
            raise ReportError(f"{path}: a scenario, not a counterexample: find one with "
                              f"'pagesim check {path} --save ce.json', then "
                              "'pagesim report ce.json'") from None
        raise ReportError(f"{path}: not a counterexample or a results file (bad JSON: "
                          f"{e.msg} at line {e.lineno})") from None
    kind = data.get("format") if isinstance(data, dict) else None
    if kind == RESULTS_FORMAT:
        from pagesim.sim.results import load_results
        results = load_results(path)  # checks the file's shape (ResultsError names it)
        return simulation_report_from_files(results, path, max_events_per_cpu=max_events)
    if isinstance(data, dict) and kind is not None and kind != RESULTS_FORMAT \
            and kind != "pagesim-counterexample":
        raise ReportError(f"{path}: a {kind!r} file, not a counterexample or a results file")
    if not isinstance(data, dict) or kind is None:
        raise ReportError(f"{path}: not a pagesim counterexample or simulation results file")
    return counterexample_report(path, data)


def _default_out(input_path: str) -> Path:
    p = Path(input_path)
    if p.is_dir():
        return p / REPORT_NAME
    if p.name == "results.json":
        return p.parent / REPORT_NAME
    return p.with_suffix(".html")


@click.command("report")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("-o", "--out", "out", type=click.Path(), default=None,
              help="the HTML file to write (default: INPUT with .html, or DIR/report.html)")
@click.option("--max-events", type=click.IntRange(2, 1_000_000), default=None,
              help="simulations: kmem events shown per CPU, half from the start of the "
                   "run and half from its end (default 2000)")
def report(input_path: str, out: str | None, max_events: int | None) -> None:
    """Write one self-contained HTML page (no server, no network) for a counterexample
    saved by 'pagesim check --save' or a simulation's results ('pagesim simulate --out'
    directory or its results.json): per-CPU lanes of the steps, and for a selected step
    its call chain, values and the state it changed.

    Exit status: 0 written, 2 bad input."""
    target = Path(out) if out is not None else _default_out(input_path)
    if target.is_dir():
        raise ReportError(f"{target}: is a directory (give the HTML file's name)")
    if not target.parent.is_dir():
        raise ReportError(f"{target}: directory {target.parent} does not exist")
    doc = build_document(input_path, max_events)
    write_report(target, doc)
    what = "steps" if doc["kind"] == "counterexample" else "boxes"
    click.echo(f"report written to {target} ({len(doc['items']):,} {what} on "
               f"{len(doc['cpus'])} CPU lanes)")


def add_commands(cli: click.Group) -> None:
    """Register ``report`` on the ``pagesim`` group (main.py owns the group)."""
    cli.add_command(report)
