# SPDX-License-Identifier: GPL-2.0-only
"""Pictures of a simulation, drawn from its results file (:mod:`pagesim.sim.results`).

Three figures, each written as PNG and SVG:

* ``pcp_pages``: pages on the pcplists of each CPU over time, one line per CPU, the
  quantity the pcp high/batch formulas and the drains of spec §5 act on;
* ``free_blocks``: free blocks per order (buddyinfo's columns) over time, or as bars
  when the run has a single sample;
* ``offline``: what a memory offline (or a contiguous allocation) did over time: its
  retries, isolated pages still on pcplists (spec §6.1), and the cumulative
  drains, remote drains and migrations, with each long operation shaded from start to
  end and vertical marks where drains and retries happened. Migrations and retries are
  the model's own counters (:class:`pagesim.model.migrate.VmEvents`).

``pagesim compare --workload`` draws one more figure, ``compare``, from the results of
several configurations (:func:`write_compare_plot`): total pages on pcplists over time,
and pages migrated over time with each offline's start and end marked, one line per
configuration.

The plots are drawn from the results dictionary only, never from a live simulation, so
``pagesim plot`` redraws exactly what ``pagesim simulate --out`` drew. Samples are the
only clock the file has, so a drain or a retry is marked at the first sample that
counts it: the marks have the resolution of ``sample_every``, not of a step.

matplotlib is an optional dependency (``pip install 'pagesim[plot]'``); this module
imports it lazily so that the rest of pagesim, and the message saying how to get it,
work without it. Figures are built without pyplot (no global state, no display) and
rendered with the Agg canvas. Each file is rendered in memory and then written through a
temporary file and a rename, so a reader never sees half a picture.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagesim.trace._files import make_dir, write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "svg")
INSTALL_HINT = "pip install 'pagesim[plot]'"
#: the figures, in the order they are drawn; each is written as ``<name>.<format>``
PLOTS = ("pcp_pages", "free_blocks", "offline")


class PlotError(ValueError):
    """Results whose series cannot be drawn (the wrong shape), or a bad format list."""


@dataclass
class PlotReport:
    """What :func:`write_plots` wrote, and what it skipped and why (one note each)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def plots_available() -> bool:
    """Whether matplotlib can be imported; callers print the install hint if not."""
    return importlib.util.find_spec("matplotlib") is not None


def parse_formats(text: str) -> tuple[str, ...]:
    """``"png,svg"`` -> ``("png", "svg")``, refusing anything else by name."""
    got = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    if not got:
        raise PlotError("--format: give at least one of png, svg")
    for f in got:
        if f not in FORMATS:
            raise PlotError(f"--format: {f!r} is not one of png, svg")
    return got


# =======================================================================================
# Reading the series defensively: a results file is input, and load_results checks
# only that every series is there with the right length.


def _numbers(data: dict[str, Any], name: str) -> list[float]:
    vals = data["samples"].get(name)
    if not isinstance(vals, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        raise PlotError(f"samples.{name}: expected a list of numbers")
    return [float(v) for v in vals]


def _rows(data: dict[str, Any], name: str) -> list[list[float]]:
    vals = data["samples"].get(name)
    if not isinstance(vals, list) or not all(
            isinstance(row, list) and all(isinstance(v, int | float) and
                                          not isinstance(v, bool) for v in row)
            for row in vals):
        raise PlotError(f"samples.{name}: expected a list of lists of numbers")
    if len({len(row) for row in vals}) > 1:
        raise PlotError(f"samples.{name}: rows of different lengths")
    return [[float(v) for v in row] for row in vals]


def _title(data: dict[str, Any], what: str) -> str:
    wl = data.get("workload")
    name = wl.get("name") if isinstance(wl, dict) else None
    return (f"{what}: {name or 'workload'} on {data.get('kernel', '?')}, "
            f"seed {data.get('seed', '?')}")


# =======================================================================================
# The figures


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_pcp_pages(data: dict[str, Any]) -> Figure:
    steps = _numbers(data, "step")
    pcp = _rows(data, "pcp_pages")
    fig, ax = _figure()
    nr_cpus = len(pcp[0])
    for cpu in range(nr_cpus):
        # gid: the line's id in the SVG, so a reader (or a test) can find it by CPU
        ax.plot(steps, [row[cpu] for row in pcp], label=f"cpu{cpu}", gid=f"cpu{cpu}",
                linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("pages on pcplists")
    ax.set_title(_title(data, "pcp pages per CPU"))
    if nr_cpus <= 16:
        ax.legend(ncols=min(nr_cpus, 8), fontsize="small")
    return fig


def plot_free_blocks(data: dict[str, Any]) -> Figure:
    steps = _numbers(data, "step")
    blocks = _rows(data, "free_blocks")
    fig, ax = _figure()
    nr_orders = len(blocks[0])
    if len(steps) == 1:
        # one sample: the end state, as buddyinfo would show it
        ax.bar(range(nr_orders), blocks[0], gid="free_blocks")
        ax.set_xlabel("order")
        ax.set_xticks(range(nr_orders))
    else:
        from matplotlib import colormaps

        # eleven orders outrun the default ten-colour cycle; a gradient keeps them apart
        # and reads as small-to-large
        cmap = colormaps["viridis"]
        for order in range(nr_orders):
            ax.plot(steps, [row[order] for row in blocks], label=f"order {order}",
                    gid=f"order{order}", linewidth=1,
                    color=cmap(order / max(nr_orders - 1, 1)))
        ax.set_xlabel("step")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    # order-0 counts are thousands of times the high orders': a linear axis hides them
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("free blocks")
    ax.set_title(_title(data, "free blocks per order"))
    return fig


def _increases(steps: Sequence[float], series: Sequence[float]) -> list[float]:
    """The sample steps at which a series went up: where a drain or retry happened
    since the previous sample."""
    return [steps[i] for i in range(1, len(series)) if series[i] > series[i - 1]]


def plot_offline(data: dict[str, Any]) -> Figure:
    steps = _numbers(data, "step")
    retries = _numbers(data, "offline_retries")
    isolated = _numbers(data, "isolated_on_pcp")
    drains = _numbers(data, "drains")
    remote = _numbers(data, "remote_drains")
    migrations = _numbers(data, "migrations")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(steps, retries, label="offline retries (cumulative)", gid="retries",
             drawstyle="steps-post")
    top.plot(steps, isolated, label="isolated pages on pcplists", gid="isolated_on_pcp",
             drawstyle="steps-post")
    top.set_ylabel("count")
    top.set_title(_title(data, "offline progress"))
    bottom.plot(steps, drains, label="drain_all_pages calls", gid="drains")
    bottom.plot(steps, remote, label="remote drains", gid="remote_drains")
    bottom.plot(steps, migrations, label="migrations", gid="migrations")
    bottom.set_ylabel("cumulative")
    bottom.set_xlabel("step")
    events = data.get("events")
    for i, ev in enumerate(events if isinstance(events, list) else []):
        if not isinstance(ev, dict) or ev.get("op") not in ("offline", "alloc_contig"):
            continue
        start, end = ev.get("started"), ev.get("ended")
        if not isinstance(start, int) or start < 0:
            continue
        if not isinstance(end, int) or end < start:
            end = int(steps[-1])  # still running when the run stopped
        ret = ev.get("ret")
        outcome = "ok" if ret == 0 else ("unfinished" if ret is None else f"ret {ret}")
        for ax in (top, bottom):
            ax.axvspan(start, end, alpha=0.12, color="tab:gray",
                       label=f"{ev['op']} on cpu{ev.get('cpu', '?')} ({outcome})"
                       if ax is top else None, gid=f"event{i}" if ax is top else None)
    for x in _increases(steps, drains):
        for ax in (top, bottom):
            ax.axvline(x, color="tab:red", linewidth=0.6, linestyle=":")
    for x in _increases(steps, retries):
        top.axvline(x, color="tab:purple", linewidth=0.6, linestyle="--")
    # one legend entry for each kind of mark, not one per mark
    top.plot([], [], color="tab:purple", linestyle="--", linewidth=0.6,
             label="retry (at sample resolution)")
    top.plot([], [], color="tab:red", linestyle=":", linewidth=0.6,
             label="drain (at sample resolution)")
    top.legend(fontsize="small")
    bottom.legend(fontsize="small")
    return fig


def _why_not(data: dict[str, Any], name: str) -> str | None:
    """Why a figure cannot be drawn from these results (None: it can)."""
    samples = data.get("samples")
    if not isinstance(samples, dict):
        return "the results have no samples"
    needs = {"pcp_pages": ("step", "pcp_pages"), "free_blocks": ("step", "free_blocks"),
             "offline": ("step", "offline_retries", "isolated_on_pcp", "drains",
                         "remote_drains", "migrations")}[name]
    missing = [k for k in needs if k not in samples]
    if missing:
        return f"the results have no {', '.join(missing)} series"
    if not samples["step"]:
        return "the results have no samples"
    if name in ("pcp_pages", "free_blocks") and isinstance(samples[name], list) and \
            samples[name] and isinstance(samples[name][0], list) and not samples[name][0]:
        return f"samples.{name} has no columns"
    if name == "offline":
        events = data.get("events")
        ops = {e.get("op") for e in events if isinstance(e, dict)} \
            if isinstance(events, list) else set()
        if not ops & {"offline", "alloc_contig"} and not any(samples["drains"]):
            return "the workload has no offline or contiguous allocation and no drains"
    return None


DRAW = {"pcp_pages": plot_pcp_pages, "free_blocks": plot_free_blocks,
        "offline": plot_offline}


_LINESTYLES = ("-", "--", "-.", ":")


def plot_compare(runs: Sequence[tuple[str, dict[str, Any]]]) -> Figure:
    """One figure for several runs of one workload: ``(label, results)`` each."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i, (label, data) in enumerate(runs):
        steps = _numbers(data, "step")
        pcp = [sum(row) for row in _rows(data, "pcp_pages")]
        migrated = _numbers(data, "migrations")
        colour = f"C{i % 10}"
        # generations that behave alike draw the same line: the styles keep both visible
        style = _LINESTYLES[i % len(_LINESTYLES)]
        top.plot(steps, pcp, label=label, gid=f"pcp{i}", color=colour, linewidth=1.2,
                 linestyle=style)
        bottom.plot(steps, migrated, label=label, gid=f"migrations{i}", color=colour,
                    linewidth=1.2, linestyle=style)
        events = data.get("events")
        for ev in events if isinstance(events, list) else []:
            if not isinstance(ev, dict) or ev.get("op") != "offline":
                continue
            start, end = ev.get("started"), ev.get("ended")
            if isinstance(start, int) and start >= 0:
                bottom.axvline(start, color=colour, linewidth=0.6, alpha=0.4)
            if isinstance(end, int) and end >= 0:
                bottom.axvline(end, color=colour, linewidth=0.8)
    wl = runs[0][1].get("workload") if runs else None
    name = wl.get("name") if isinstance(wl, dict) else None
    top.set_title(f"{name or 'workload'}, seed {runs[0][1].get('seed', '?')}: "
                  "pages on pcplists (all CPUs)" if runs else "pages on pcplists")
    top.set_ylabel("pages on pcplists")
    bottom.set_ylabel("pages migrated (cumulative)")
    bottom.set_xlabel("step")
    bottom.plot([], [], color="tab:gray", linewidth=0.6, alpha=0.4, label="offline starts")
    bottom.plot([], [], color="tab:gray", linewidth=0.8, label="offline ends")
    top.legend(fontsize="small")
    bottom.legend(fontsize="small")
    return fig


# =======================================================================================
# Writing


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as bytes; no date in the metadata, so the same results draw the same
    SVG bytes (and PNG too, with the same matplotlib and fonts)."""
    buf = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "pagesim"}):
        fig.savefig(buf, format=fmt, dpi=100, metadata=metadata)
    return buf.getvalue()


def write_plots(data: dict[str, Any], out_dir: str | Path,
                formats: Sequence[str] = FORMATS) -> PlotReport:
    """Draw every figure the results allow into ``out_dir`` as ``<plot>.<format>``.

    A figure the results cannot support is skipped with a note in the report rather than
    failing the run that produced them; a series of the wrong shape raises
    :class:`PlotError`, since that file is damaged. Every figure is rendered before the
    first file is written, so a damaged file leaves nothing behind."""
    out = Path(out_dir)
    report = PlotReport()
    blobs: list[tuple[Path, bytes]] = []
    for name in PLOTS:
        why = _why_not(data, name)
        if why is not None:
            report.skipped.append(f"{name}: {why}")
            continue
        fig = DRAW[name](data)
        blobs += [(out / f"{name}.{fmt}", render(fig, fmt)) for fmt in formats]
    if blobs:
        make_dir(out)
    for path, blob in blobs:
        write_bytes_atomic(path, blob)
        report.written.append(path)
    return report


def write_compare_plot(runs: Sequence[tuple[str, dict[str, Any]]], out_dir: str | Path,
                       formats: Sequence[str] = FORMATS) -> PlotReport:
    """Draw :func:`plot_compare` into ``out_dir`` as ``compare.<format>`` (rendered
    whole before anything is written, as :func:`write_plots`)."""
    report = PlotReport()
    usable = [(label, data) for label, data in runs
              if isinstance(data.get("samples"), dict) and data["samples"].get("step")]
    if not usable:
        report.skipped.append("compare: the results have no samples")
        return report
    out = Path(out_dir)
    fig = plot_compare(usable)
    blobs = [(out / f"compare.{fmt}", render(fig, fmt)) for fmt in formats]
    make_dir(out)
    for path, blob in blobs:
        write_bytes_atomic(path, blob)
        report.written.append(path)
    return report
