# SPDX-License-Identifier: GPL-2.0-only
"""The results file of a simulation: one JSON object, written whole or not at all.

Format ``pagesim-sim-results``, version 1::

    {"format": "pagesim-sim-results", "version": 1,
     "seed": 1, "kernel": "v5.11", "nr_cpus": 8,
     "machine": {"source": "preset 16g-8cpu", "zones": [{"name", "start_pfn",
                 "spanned", "present", "managed"}...]},
     "workload": {... the workload, as its TOML would say it ...},
     "steps": 412345, "finished": true,
     "summary": {"page_ops", "allocs", "alloc_pages", "failed_allocs", "frees",
                 "free_pages", "batched_frees", "stepped_ops", "runtime_steps",
                 "drains", "remote_drains", "migrations", "migrate_failures",
                 "isolated_allocs", "invariant_checks_passed", "pcp_pages_mean",
                 "pcp_pages_max", "contig_failures", "offline_retries"},
     "events": [{"op", "cpu", "at", "started", "ended", "duration_steps", "block",
                 "start_pfn", "nr_pages", "ret", "reason", "retries", "gave_up"}...],
     "samples": {"step": [...], "pcp_pages": [[per CPU]...],
                 "free_blocks": [[per order]...], "nr_free_pages": [...],
                 "in_use": [...], "drains": [...], "remote_drains": [...],
                 "migrations": [...], "isolated_on_pcp": [...],
                 "offline_retries": [...]},
     "violation": null | {"property", "message", "step", "context"}}

Every sample series has one entry per sampled step. ``migrations`` and
``migrate_failures`` are pages, from the model's own ``pgmigrate_success`` and
``pgmigrate_fail`` counters (:class:`pagesim.model.migrate.VmEvents`);
``offline_retries`` (in the summary and as a cumulative series) are rounds without
progress of the offlines, counted where ``offline_pages()`` retries. ``isolated_allocs``
counts pages handed out by the workload from a pageblock that was isolated at that
moment (the safety violation of spec §6.1). Nothing in the file depends on the wall clock, so a run
with the same machine, workload and seed writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pagesim.sim.runner import SimResult
from pagesim.trace._files import make_dir, write_text_atomic

FORMAT = "pagesim-sim-results"
VERSION = 1
RESULTS_NAME = "results.json"
SERIES = ("step", "pcp_pages", "free_blocks", "nr_free_pages", "in_use", "drains",
          "remote_drains", "migrations", "isolated_on_pcp", "offline_retries")


class ResultsError(ValueError):
    """A results file that is not one, or is damaged."""


def summary(r: SimResult) -> dict[str, Any]:
    """The headline numbers of a run."""
    c = r.counters
    pcp = [sum(row) for row in r.samples["pcp_pages"]]
    return {
        "page_ops": c.page_ops, "allocs": c.allocs, "alloc_pages": c.alloc_pages,
        "failed_allocs": c.failed_allocs, "frees": c.frees, "free_pages": c.free_pages,
        "batched_frees": c.batched_frees, "stepped_ops": c.stepped_ops,
        "runtime_steps": c.runtime_steps, "drains": c.drains,
        "remote_drains": c.remote_drains, "migrations": c.migrations,
        "migrate_failures": c.migrate_failures,
        "isolated_allocs": c.isolated_allocs,
        "invariant_checks_passed": c.invariant_checks,
        "pcp_pages_mean": round(sum(pcp) / len(pcp), 1) if pcp else 0,
        "pcp_pages_max": max(pcp, default=0),
        "contig_failures": sum(1 for e in r.events
                               if e.op == "alloc_contig" and (e.ret or 0) < 0),
        "offline_retries": c.offline_retries,
    }


def to_json(r: SimResult) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "seed": r.seed, "kernel": r.kernel,
            "nr_cpus": r.nr_cpus, "machine": r.machine, "workload": r.workload,
            "steps": r.steps, "finished": r.finished, "summary": summary(r),
            "events": [e.to_dict() for e in r.events],
            "samples": {k: r.samples[k] for k in SERIES}, "violation": r.violation}


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all, making its directory first."""
    make_dir(path.parent)
    write_text_atomic(path, text)


def write_results(r: SimResult, path: Path) -> None:
    write_atomic(path, json.dumps(to_json(r), indent=1, sort_keys=True) + "\n")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file back (for plots and comparisons), checking its shape."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultsError(f"{p}: not a pagesim results file")
    if data.get("version") != VERSION:
        raise ResultsError(f"{p}: unsupported results version {data.get('version')!r}")
    samples = data.get("samples")
    if not isinstance(samples, dict) or any(k not in samples for k in SERIES):
        raise ResultsError(f"{p}: samples: missing series")
    for k in SERIES:
        rows = k in _PER_ITEM
        if not isinstance(samples[k], list) or not all(
                _numbers(v) if rows else _number(v) for v in samples[k]):
            what = "lists of numbers" if rows else "numbers"
            raise ResultsError(f"{p}: samples.{k}: expected a list of {what}")
    n = len(samples["step"])
    for k in SERIES:
        if len(samples[k]) != n:
            raise ResultsError(f"{p}: samples.{k}: {len(samples[k])} entries, expected {n}")
    for key in ("summary", "events", "workload", "machine"):
        if key not in data:
            raise ResultsError(f"{p}: {key}: missing")
        want = list if key == "events" else dict
        if not isinstance(data[key], want):
            raise ResultsError(f"{p}: {key}: expected {'a list' if want is list else 'an object'}")
    if not all(isinstance(e, dict) for e in data["events"]):
        raise ResultsError(f"{p}: events: expected a list of objects")
    return data


#: series with one list per sample (per CPU, per order) rather than one number
_PER_ITEM = ("pcp_pages", "free_blocks")


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _numbers(v: object) -> bool:
    return isinstance(v, list) and all(_number(x) for x in v)
