# SPDX-License-Identifier: GPL-2.0-only
"""The checker against SPIN on the memory-offline race (issue 4's benchmark).

The baseline is a hand-written Promela model of the same protocol,
``bench/spin/offline.pml`` (see ``bench/spin/README.md``): built with ``spin -a`` and
``gcc`` and run in this process's run, so the ratio compares two tools on the same
machine at the same moment, never against a figure remembered from elsewhere. For every
generation it is given, the bench runs

* SPIN's exhaustive safety search (``pan``), which stops at the first assertion
  violation: the time to the first counterexample, or to verification;
* pagesim's ``check`` on the scenario, once per exhaustive strategy (whatever
  :data:`pagesim.explore.STRATEGIES` offers except the sampling ones), stopping at the
  first violation, without minimising it (minimisation is not part of finding), with a
  time limit so that the bench always ends;

and prints one table: scenario, generation, tool, verdict, states (SPIN: states stored)
or executions (pagesim; plus distinct states where a strategy counts them), seconds,
and pagesim's seconds divided by SPIN's for the same generation. SPIN's seconds are the
search alone (``pan``'s wall time); the time to generate and compile the verifier is
printed separately.

SPIN is not a dependency of the project: install it to get the baseline
(``apt-get install spin`` on Debian and Ubuntu; gcc is needed too). Without ``spin`` or
a C compiler on PATH the SPIN rows are skipped and the table says why.

Usage::

    python bench/bench_spin.py                       # v5.8, v5.10, v5.11 on 3 CPUs
    python bench/bench_spin.py --kernels v5.11 --cpus 2 --time-limit 60
    python bench/bench_spin.py --ops 1               # one move per worker, both tools
    python bench/bench_spin.py --spin-cyclic         # also SPIN with endless workers
    python bench/bench_spin.py --json                # one JSON object per row
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODEL = Path(__file__).resolve().parent / "spin" / "offline.pml"

#: the Promela model's generation macro for each kernel it models
SPIN_GENERATION = {"v5.8": "V58", "v5.9": "V510", "v5.10": "V510", "v5.11": "V511"}
#: strategies that sample instead of covering everything
SAMPLING = frozenset({"random", "pct", "bounded"})
#: the scenarios whose workers make a given number of moves, and how to build them
#: with another number (SPIN gets the same number as ``-DOPS``)
WITH_OPS = {"offline-vs-alloc-free": {}, "offline-termination": {"check_safety": False}}


def assertion_name(text: str) -> str:
    """The property behind one of the model's assertions, as pan prints it."""
    if "isob" in text:
        return "safety: a page of the isolated block allocated"
    if text == "0":
        return "termination: the offline never finishes after the workers stopped"
    return text[:50]


@dataclass
class Row:
    scenario: str
    kernel: str
    tool: str
    verdict: str
    states: int | None = None
    executions: int | None = None
    seconds: float | None = None
    ratio: float | None = None
    build_seconds: float | None = None
    memory_mb: float | None = None
    note: str = ""


class BenchError(Exception):
    """Bad input, reported in one line."""


# ---- SPIN ----------------------------------------------------------------------


def spin_unavailable() -> str | None:
    """Why the SPIN rows cannot run, or None."""
    if not MODEL.is_file():
        return f"{MODEL} is missing"
    if shutil.which("spin") is None:
        return "spin is not on PATH (Debian/Ubuntu: apt-get install spin)"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler (gcc or cc) on PATH"
    return None


def spin_version() -> str:
    try:
        out = subprocess.run(["spin", "-V"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "spin"
    return out.stdout.strip() or "spin"


def run_spin(scenario: str, kernel: str, cpus: int, workdir: Path, *, ops: int | None,
             time_limit: float, memlim_mb: int, collapse: bool) -> Row:
    """Generate, compile and run the verifier for one generation."""
    label = "spin" if ops is None else f"spin ({ops} moves)"
    gen = SPIN_GENERATION.get(kernel)
    if gen is None:
        return Row(scenario, kernel, label, "skipped",
                   note=f"the Promela model has no generation {kernel}")
    d = workdir / f"{gen}-{cpus}-{ops or 'cyclic'}"
    d.mkdir()
    shutil.copy(MODEL, d / MODEL.name)
    defines = [f"-D{gen}", f"-DNCPU={cpus}"] + ([] if ops is None else [f"-DOPS={ops}"])
    cc = shutil.which("gcc") or "cc"
    cflags = ["-O2", "-w", "-DSAFETY", f"-DMEMLIM={memlim_mb}"]
    if collapse:
        cflags.append("-DCOLLAPSE")
    t0 = time.perf_counter()
    for cmd in (["spin", *defines, "-a", MODEL.name],
                [cc, *cflags, "-o", "pan", "pan.c"]):
        p = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        if p.returncode:
            first = (p.stderr or p.stdout).strip().splitlines()[:1]
            raise BenchError(f"{' '.join(cmd)} failed in {d}: {first[0] if first else ''}")
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        p = subprocess.run(["./pan", "-m500000"], cwd=d, capture_output=True,
                           text=True, timeout=time_limit)
    except subprocess.TimeoutExpired:
        return Row(scenario, kernel, label, "timeout", seconds=time.perf_counter() - t0,
                   build_seconds=build, note=f"pan ran past {time_limit:g} s")
    seconds = time.perf_counter() - t0
    return parse_pan(p.stdout, Row(scenario, kernel, label, "", seconds=seconds,
                                   build_seconds=build))


def parse_pan(out: str, row: Row) -> Row:
    """Fill ``row`` from pan's report."""

    def num(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None

    errors = num(r"errors: (\d+)")
    stored = num(r"([\d.e+]+) states, stored")
    row.states = None if stored is None else int(stored)
    row.memory_mb = num(r"([\d.]+)\s+total actual memory usage")
    if errors is None:
        row.verdict = "error"
        row.note = out.strip().splitlines()[-1] if out.strip() else "pan printed nothing"
    elif errors:
        row.verdict = "violation"
        m = re.search(r"pan:\d+: assertion violated (.*?) \(at depth (\d+)\)", out)
        if m:
            row.note = f"{assertion_name(m.group(1).strip())}, " \
                       f"trail depth {m.group(2)}"
        elif "invalid end state" in out:
            row.note = "deadlock (invalid end state)"
    elif "Search not completed" in out or "max search depth too small" in out:
        row.verdict = "incomplete"
        if "MEMLIM" in out or "out of memory" in out:
            row.note = "out of memory (raise --spin-memory, or --spin-collapse)"
        elif "max search depth too small" in out:
            row.note = "max search depth too small (raise -m)"
        else:
            row.note = "search not completed"
    else:
        row.verdict = "verified"
    return row


# ---- pagesim -------------------------------------------------------------------


def exhaustive_strategies() -> list[str]:
    from pagesim import explore

    declared = getattr(explore, "EXHAUSTIVE", None)
    if declared:
        return [s for s in explore.STRATEGIES if s in declared]
    return [s for s in explore.STRATEGIES if s not in SAMPLING]


def pagesim_program(scenario: str, kernel: str, cpus: int, ops: int) -> Any:
    """The scenario's program, its workers making ``ops`` moves where it has such
    workers (the number SPIN's model is given too)."""
    from pagesim.scenarios import program
    from pagesim.scenarios.offline import offline_program

    if scenario in WITH_OPS:
        return offline_program(kernel, cpus, ops=ops, name=scenario, **WITH_OPS[scenario])
    return program(scenario, kernel, cpus)


def run_pagesim(scenario: str, kernel: str, cpus: int, strategy: str,
                time_limit: float, ops: int) -> Row:
    from pagesim.explore import check

    prog = pagesim_program(scenario, kernel, cpus, ops)
    t0 = time.perf_counter()
    r = check(prog, strategy=strategy, time_limit=time_limit, stop_on_violation=True,
              minimize=False)
    seconds = time.perf_counter() - t0
    verdict = r.verdict
    note = ""
    if r.verdict == "violation":
        note = f"{r.property}: {r.message or ''}"[:70]
    elif not r.complete:
        verdict = "timeout"
        note = f"stopped at the {time_limit:g} s limit"
    return Row(scenario, kernel, f"pagesim {strategy}", verdict, states=r.distinct_states,
               executions=r.executions, seconds=seconds, note=note)


# ---- the table -----------------------------------------------------------------


def fmt_count(row: Row) -> str:
    parts = []
    if row.states is not None:
        parts.append(f"{row.states:,} st")
    if row.executions is not None:
        parts.append(f"{row.executions:,} ex")
    return " / ".join(parts) or "-"


def print_table(rows: list[Row]) -> None:
    head = (f"{'scenario':22} {'gen':6} {'tool':18} {'verdict':10} "
            f"{'states / executions':>24} {'seconds':>9} {'pagesim/spin':>12}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        secs = "-" if r.seconds is None else f"{r.seconds:9.2f}"
        ratio = "" if r.ratio is None else f"{r.ratio:11.2f}x"
        print(f"{r.scenario:22} {r.kernel:6} {r.tool:18} {r.verdict:10} "
              f"{fmt_count(r):>24} {secs:>9} {ratio:>12}  {r.note}")


def _progress(row: Row) -> None:
    """One line on stderr per finished run: the table comes only at the end."""
    secs = "" if row.seconds is None else f" in {row.seconds:.1f} s"
    print(f"  {row.kernel} {row.tool}: {row.verdict}{secs}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="offline-vs-alloc-free")
    ap.add_argument("--kernels", default="v5.8,v5.10,v5.11",
                    help="comma-separated generations (default: v5.8,v5.10,v5.11)")
    ap.add_argument("--cpus", type=int, default=3, help="CPU0 plus workers (default 3)")
    ap.add_argument("--ops", type=int, default=None,
                    help="moves per worker, pagesim and SPIN alike (default: the "
                    "scenario's, DEFAULT_OPS in pagesim/scenarios/offline.py)")
    ap.add_argument("--time-limit", type=float, default=300.0,
                    help="seconds per run, pagesim and SPIN alike (default 300)")
    ap.add_argument("--strategies", default=None,
                    help="comma-separated pagesim strategies (default: every exhaustive one)")
    ap.add_argument("--no-spin", action="store_true", help="skip the SPIN baseline")
    ap.add_argument("--spin-cyclic", action="store_true",
                    help="also run SPIN with workers that loop until they choose to stop")
    ap.add_argument("--spin-memory", type=int, default=4096,
                    help="pan's memory limit in MB (default 4096)")
    ap.add_argument("--spin-collapse", action="store_true",
                    help="compile pan with -DCOLLAPSE (less memory, a little slower)")
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except BenchError as e:
        print(f"bench_spin: error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from pagesim.model.kernels import kernel
    from pagesim.scenarios import ScenarioError, get
    from pagesim.scenarios.offline import DEFAULT_OPS

    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    ops = DEFAULT_OPS if args.ops is None else args.ops
    if ops < 1:
        raise BenchError(f"--ops: {ops} is not a positive number of moves")
    try:
        sc = get(args.scenario)
        for k in kernels:
            kernel(k)
        sc.program(kernels[0] if kernels else "v5.11", args.cpus)
    except (ScenarioError, ValueError) as e:
        raise BenchError(f"--scenario/--kernels/--cpus: {e}") from None
    if not kernels:
        raise BenchError("--kernels: no generation given")
    if args.time_limit <= 0:
        raise BenchError(f"--time-limit: {args.time_limit:g} is not positive")
    all_exhaustive = exhaustive_strategies()
    if args.strategies is None:
        strategies = all_exhaustive
    else:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        bad = [s for s in strategies if s not in all_exhaustive]
        if bad:
            raise BenchError(f"--strategies: {', '.join(bad)} is not an exhaustive strategy "
                             f"(one of {', '.join(all_exhaustive)})")

    why_not = "disabled by --no-spin" if args.no_spin else spin_unavailable()
    if not args.json:
        print(f"pagesim vs SPIN: {args.scenario}, {args.cpus} CPUs, {ops} moves per "
              f"worker, Python "
              f"{platform.python_version()} on {platform.machine()} "
              f"({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M')}")
        print(f"SPIN: {spin_version() if why_not is None else 'skipped: ' + why_not}")
        print(f"pagesim strategies: {', '.join(strategies)}; time limit "
              f"{args.time_limit:g} s per run; seconds = time to the first "
              "counterexample, or to the verdict")
        print()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-spin-") as tmp:
        for k in kernels:
            spin_rows: list[Row] = []
            if why_not is None:
                variants: list[int | None] = [ops] + ([None] if args.spin_cyclic else [])
                for spin_ops in variants:
                    spin_rows.append(run_spin(args.scenario, k, args.cpus, Path(tmp),
                                              ops=spin_ops, time_limit=args.time_limit,
                                              memlim_mb=args.spin_memory,
                                              collapse=args.spin_collapse))
                    _progress(spin_rows[-1])
            base = spin_rows[0] if spin_rows else None
            these = list(spin_rows)
            for s in strategies:
                row = run_pagesim(args.scenario, k, args.cpus, s, args.time_limit, ops)
                if base is not None and base.seconds and row.seconds is not None and \
                        base.verdict in ("verified", "violation"):
                    row.ratio = row.seconds / base.seconds
                these.append(row)
                _progress(row)
            for r in these:
                if args.json:
                    print(json.dumps(asdict(r)), flush=True)
            rows.extend(these)
    if not args.json:
        print_table(rows)
        builds = [r for r in rows if r.build_seconds is not None]
        if builds:
            print()
            print("SPIN build (spin -a + gcc) seconds: " + ", ".join(
                f"{r.kernel} {r.tool} {r.build_seconds:.1f}" for r in builds))
            print("SPIN memory (MB): " + ", ".join(
                f"{r.kernel} {r.tool} {r.memory_mb:.0f}" for r in builds
                if r.memory_mb is not None))
        if why_not is not None:
            print()
            print(f"The SPIN column is skipped: {why_not}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
