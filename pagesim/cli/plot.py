# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim plot RESULTS``: redraw the pictures of a simulation from its results file.

The results file is the record of a run; plots are a view of it, so they can be redrawn
(in another format, into another directory, after a matplotlib upgrade) without running
the simulation again. The figures are those ``pagesim simulate --out`` draws
(:mod:`pagesim.sim.plots`).
"""

from __future__ import annotations

from pathlib import Path

import click

from pagesim.sim.plots import (
    INSTALL_HINT,
    PlotError,
    parse_formats,
    plots_available,
    write_plots,
)
from pagesim.sim.results import ResultsError, load_results


@click.command()
@click.argument("results", type=click.Path(dir_okay=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="directory for the pictures (default: the results file's)")
@click.option("--format", "formats", default="png,svg", show_default=True,
              help="comma-separated: png, svg")
def plot(results: str, out_dir: str | None, formats: str) -> None:
    """Draw pcp pages per CPU, free blocks per order and offline progress from a
    results.json written by 'pagesim simulate --out'."""
    from pagesim.cli.main import fail

    try:
        fmts = parse_formats(formats)
    except PlotError as e:
        fail(str(e))
    path = Path(results)
    if not path.exists():
        fail(f"{results}: no such file")
    if path.is_dir():
        fail(f"{results}: is a directory (give its results.json)")
    try:
        data = load_results(path)
    except ResultsError as e:
        fail(str(e))  # already "FILE: problem"
    except UnicodeDecodeError:
        fail(f"{results}: not a pagesim results file (not text)")
    except OSError as e:
        fail(f"{results}: {e.strerror or e}")
    if not plots_available():
        fail(f"plots need matplotlib: {INSTALL_HINT}")
    out = Path(out_dir) if out_dir else path.parent
    if out.exists() and not out.is_dir():
        fail(f"{out}: not a directory")
    try:
        report = write_plots(data, out, fmts)
    except PlotError as e:
        fail(f"{results}: {e}")
    for note in report.skipped:
        click.echo(f"pagesim: plot: skipped {note}", err=True)
    names = ", ".join(p.name for p in report.written) or "nothing"
    click.echo(f"plots in {out}/: {names}")

