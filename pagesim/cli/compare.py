# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim compare``: one scenario, checked on several kernel generations, one table.

The question it answers is the project's: which generations have the race, and which
fix closes it. Each kernel gets its own ``check`` run (a fresh program, the same
strategy and bounds), so a row reads exactly like ``pagesim check SCENARIO --kernel K``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import click

from pagesim.explore import STRATEGIES, check
from pagesim.explore.common import Bounds, Result
from pagesim.model.kernels import kernel as kernel_of
from pagesim.scenarios import resolve

DEFAULT_KERNELS = "v5.8,v5.10,v5.11,v5.11-unforced,v6.0,v6.11,v6.19"


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
            bounds: Bounds) -> list[Row]:
    """Check ``scenario`` (a name or a scenario file) on every kernel of ``kernels``, in
    order."""
    sc = resolve(scenario)
    rows = []
    for name in kernels:
        kern = kernel_of(name).name
        rows.append(Row(kern, check(sc.program(kern, cpus), strategy, bounds=bounds)))
    return rows


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
    @click.argument("scenario")
    @click.option("--kernels", default=DEFAULT_KERNELS, show_default=True,
                  help="comma-separated generations or variants (see `pagesim kernels`)")
    @click.option("--cpus", type=int, default=None, help="CPU count (default: the scenario's)")
    @click.option("--strategy", default="dpor", show_default=True,
                  help=f"one of {', '.join(STRATEGIES)}")
    @click.option("--max-executions", type=int, default=None,
                  help="stop each check after N executions")
    @click.option("--time-limit", type=float, default=None,
                  help="stop each check after this many seconds")
    @click.option("--json", "as_json", is_flag=True, help="print a JSON list")
    def compare_cmd(scenario: str, kernels: str, cpus: int | None, strategy: str,
                    max_executions: int | None, time_limit: float | None,
                    as_json: bool) -> None:
        """Check SCENARIO (a built-in name or a scenario file, FILE.toml) on each of
        several kernel generations and print one table
        (verdict, executions, time, counterexample length).

        Exit status: 0 when every check ran (whatever it found), 2 on bad input."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
        for opt, v in (("--max-executions", max_executions), ("--time-limit", time_limit)):
            if v is not None and v <= 0:
                raise ValueError(f"{opt} must be positive, not {v}")
        names = [k.strip() for k in kernels.split(",") if k.strip()]
        if not names:
            raise ValueError("--kernels lists no kernel")
        sc = resolve(scenario)
        for name in names:
            kernel_of(name)  # every name is checked before the first (long) run
        sc.program(kernel_of(names[0]).name, cpus)  # and the CPU count
        bounds = Bounds.from_env().but(max_executions=max_executions, time_limit=time_limit)
        if sys.stderr.isatty():
            click.echo(f"checking {sc.name} on {len(names)} kernels ...", err=True)
        rows = compare(sc.source or sc.name, names, cpus, strategy, bounds)
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
