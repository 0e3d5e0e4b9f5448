# SPDX-License-Identifier: GPL-2.0-only
"""One workload on several configurations: kernel generations, and pcp settings.

``pagesim compare --workload`` asks the simulator the question ``pagesim compare
SCENARIO`` asks the checker, with numbers instead of verdicts: what does the same
workload, with the same seed, do on v5.8, v5.10, v5.11 and v6.19, or with
``vm.percpu_pagelist_high_fraction`` at 0 and at 8? A configuration is a generation and,
optionally, one value of a pcp sysctl; each gets a fresh machine built the same way and
its own :class:`~pagesim.sim.runner.Simulation`, so a row reads exactly like the column
of ``pagesim simulate`` for that generation.

The sysctl is written the way the kernel's handler does it, through the model's own
``percpu_pagelist_fraction_sysctl_handler`` (pagesim.model.pageset), before the
workload starts, so the pcp high and batch of every zone come from the generation's
formula with that fraction. Which sysctl exists is a property of the generation
(vm.percpu_pagelist_fraction until 5.13, vm.percpu_pagelist_high_fraction from 5.14,
``Kernel.zone_highsize``), and naming one a generation lacks is an error rather than a
silent translation: the two divide the zone differently (per CPU, or split over the
CPUs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pagesim.model.kernels import Kernel
from pagesim.model.mmzone import Machine
from pagesim.model.pageset import percpu_pagelist_fraction_sysctl_handler
from pagesim.model.pcp_limits import check_percpu_pagelist_fraction
from pagesim.runtime.sequential import call
from pagesim.sim.results import summary
from pagesim.sim.runner import SimResult

#: the pcp sysctls a configuration may set, and the generations that have each
SYSCTLS = ("percpu_pagelist_fraction", "percpu_pagelist_high_fraction")


class CompareError(ValueError):
    """A comparison that cannot run: one line naming the option and the problem."""


@dataclass(frozen=True)
class Sysctl:
    """``vm.<name> = value``."""

    name: str
    value: int

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class Config:
    """One column of the comparison: a generation, optionally with a pcp sysctl."""

    kernel: str
    sysctl: Sysctl | None = None

    @property
    def label(self) -> str:
        return self.kernel if self.sysctl is None else f"{self.kernel} {self.sysctl}"

    @property
    def slug(self) -> str:
        """The label as a directory name."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label)


def parse_sysctl(text: str) -> list[Sysctl]:
    """``[vm.]NAME=V1[,V2...]`` -> one :class:`Sysctl` per value."""
    name, eq, values = text.partition("=")
    name = name.strip().removeprefix("vm.")
    if not eq or not name:
        raise CompareError(f"--sysctl: expected NAME=VALUE[,VALUE...], got {text!r}")
    if name not in SYSCTLS:
        raise CompareError(f"--sysctl: unknown sysctl {name!r} (one of "
                           f"{', '.join(SYSCTLS)})")
    out = []
    for v in values.split(","):
        try:
            value = int(v.strip())
        except ValueError:
            raise CompareError(f"--sysctl: {name}: {v.strip()!r} is not an integer") \
                from None
        if not -2**31 <= value < 2**31:  # an int sysctl: proc_dointvec rejects the rest
            raise CompareError(f"--sysctl: {name}: {value} does not fit the sysctl's int "
                               "(the kernel rejects it with EINVAL)")
        out.append(Sysctl(name, value))
    if len(set(out)) != len(out):
        raise CompareError(f"--sysctl: {name}: a value is given twice")
    return out


def sysctl_of(k: Kernel) -> str:
    """The pcp sysctl generation ``k`` has."""
    return SYSCTLS[1] if k.zone_highsize else SYSCTLS[0]


def check_config(k: Kernel, sysctl: Sysctl | None) -> None:
    """Refuse what the kernel would refuse: a sysctl it does not have, or a value its
    handler rejects with -EINVAL."""
    if sysctl is None:
        return
    has = sysctl_of(k)
    if sysctl.name != has:
        raise CompareError(f"--sysctl: {k.name} has no vm.{sysctl.name} (it has "
                           f"vm.{has})")
    try:
        check_percpu_pagelist_fraction(sysctl.value, k)
    except ValueError as e:
        raise CompareError(f"--sysctl: {e}") from None


def apply_sysctl(m: Machine, sysctl: Sysctl | None) -> None:
    """Write the sysctl on the booted machine, as ``sysctl -w`` would (CPU 0)."""
    if sysctl is None:
        return
    check_config(m.kernel, sysctl)
    if call(0, percpu_pagelist_fraction_sysctl_handler, m, sysctl.value):
        raise CompareError(f"--sysctl: {sysctl}: rejected by the kernel (EINVAL)")


# =======================================================================================
# The table


#: (key, header) of the table's columns, in order
COLUMNS = (
    ("config", "config"),
    ("page_ops", "page ops"),
    ("pcp_pages_mean", "pcp mean"),
    ("pcp_pages_max", "pcp max"),
    ("drains", "drains"),
    ("remote_drains", "remote"),
    ("offline", "offline"),
    ("offline_retries", "retries"),
    ("offline_steps", "offline steps"),
    ("migrations", "migrated"),
    ("isolated_allocs", "isolated allocs"),
    ("contig_failures", "contig fail"),
    ("invariant_checks_passed", "checks"),
    ("wall_seconds", "wall s"),
    ("violation", "violation"),
)


def _outcome(ev: Any) -> str:
    if ev.ret is None:
        return "not run" if ev.started < 0 else "running"
    if ev.ret == 0:
        return "ok"
    return f"gave up ({ev.retries})" if ev.gave_up else f"{ev.ret}"


def row(config: Config, r: SimResult) -> dict[str, Any]:
    """The comparison's row for one run: the summary's figures, plus the offlines'
    outcomes and total duration, the violation and the wall time."""
    s = summary(r)
    offlines = [e for e in r.events if e.op == "offline"]
    durations = [e.duration for e in offlines if e.duration >= 0]
    return {
        "config": config.label, "kernel": config.kernel,
        "sysctl": None if config.sysctl is None else {config.sysctl.name:
                                                      config.sysctl.value},
        "seed": r.seed, "nr_cpus": r.nr_cpus, "steps": r.steps, "finished": r.finished,
        "page_ops": s["page_ops"], "pcp_pages_mean": s["pcp_pages_mean"],
        "pcp_pages_max": s["pcp_pages_max"], "drains": s["drains"],
        "remote_drains": s["remote_drains"],
        "offline": ", ".join(_outcome(e) for e in offlines) or "-",
        "offline_retries": s["offline_retries"],
        "offline_steps": sum(durations) if durations else None,
        "migrations": s["migrations"], "migrate_failures": s["migrate_failures"],
        "isolated_allocs": s["isolated_allocs"], "contig_failures": s["contig_failures"],
        "invariant_checks_passed": s["invariant_checks_passed"],
        "wall_seconds": round(r.wall_seconds, 2),
        "violation": None if r.violation is None else
        f"{r.violation['property']}: {r.violation['message']}",
    }


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]], width: int = 60) -> str:
    """A plain-text table, one line per configuration (the violation cut at ``width``
    characters: the JSON has it whole)."""
    cells = [[h for _, h in COLUMNS]]
    for r in rows:
        line = [_cell(r[k]) for k, _ in COLUMNS]
        line[-1] = "" if r["violation"] is None else line[-1][:width]
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    out = []
    for i, c in enumerate(cells):
        parts = [c[0].ljust(widths[0])]
        parts += [x.rjust(w) if j < len(COLUMNS) - 1 else x.ljust(w)
                  for j, (x, w) in enumerate(zip(c[1:], widths[1:], strict=True), 1)]
        out.append("  ".join(parts).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"
