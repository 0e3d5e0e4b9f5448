# SPDX-License-Identifier: GPL-2.0-only
"""Workloads: what the CPUs of a simulated machine do, and when.

A workload is plain data, written in Python (the dataclasses below) or in TOML with the
same names (:func:`load_workload`)::

    [workload]
    name = "offline-under-load"
    duration = 400000          # simulated steps (one per page operation or runtime step)
    load = 48                  # mean page operations between two runtime steps
    sample_every = 5000

    [[mix]]                    # what some CPUs do all the time
    cpus = "1-7"               # or [1, 2, 3], or "all"
    alloc = 0.5                # probability that an operation allocates
    orders = { 0 = 95, 3 = 5 } # relative weights
    migratetypes = { movable = 90, unmovable = 10 }
    batch_free = 0.3           # share of frees done as one batch (free_unref_page_list)
    batch = 31
    max_held = 20000           # pages a CPU holds at most
    prefill = 8000             # blocks each CPU allocates before the clock starts
    preempt = 0.002            # share of operations that run step by step, preemptible
    preempt_delay = 2000       # and stay off the CPU up to this many steps at a
                               # preemption point (0: only as long as the scheduler says)

    [[burst]]                  # one CPU allocates many blocks at once, frees them later
    at = 100000
    cpu = 2
    count = 2000
    hold = 50000

    [[event]]                  # long operations at given times
    at = 20000
    cpu = 0
    op = "offline"             # offline, online, alloc_contig, free_contig
    block = "busiest"          # a memory block id, or "busiest" / "last-offlined"
    max_retries = 100

    [machine]                  # optional: the machine to run on, as a checker
    zone_pages = 262144        # scenario's [machine] (one Normal zone, memory blocks
    section_order = 15         # of one section); --preset or --zoneinfo replace it

``cpus`` in ``[workload]`` is the default of ``--cpus``: the machine's CPU count, for
any machine; without it a ``[machine]`` gets one CPU more than the highest the workload
names. The ``[machine]`` table is read by :func:`pagesim.scenarios.spec.
machine_from_table`, so it means what it means in a scenario file, with the same
one-line errors (naming the workload file).

Mixes come in two kinds: ``random`` (each operation allocates with probability
``alloc``, else frees a random block the CPU holds, by one ``__free_pages`` or, for
``batch_free`` of them, a batch of order-0 pages through ``free_unref_page_list`` as
``release_pages`` does) and ``churn`` (page-cache-like: fill up to ``max_held`` order-0
movable pages, then free them all in batches, and again).

Validation happens when a workload is built, and again against the machine
(:func:`check_against`); every error is one line naming the file, the key and the
problem.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeGuard

from pagesim.model.mmzone import MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE
from pagesim.scenarios import ScenarioError
from pagesim.scenarios.spec import MachineSpec, machine_from_table, read_toml_text, toml_error

MIGRATETYPES = {"unmovable": MIGRATE_UNMOVABLE, "movable": MIGRATE_MOVABLE,
                "reclaimable": MIGRATE_RECLAIMABLE}
MIX_KINDS = ("random", "churn")
EVENT_OPS = ("offline", "online", "alloc_contig", "free_contig")
BLOCK_WORDS = ("busiest", "last-offlined")
ONLINE_TYPES = ("online", "online_kernel", "online_movable")
#: CPUs a machine may have (as ``pagesim simulate --cpus``)
MAX_CPUS = 1024
#: page operations per round, at most (beyond it, the runner's arithmetic overflows)
MAX_LOAD = 1e9


class WorkloadError(ValueError):
    """A workload that cannot run: ``source: key: problem``."""


@dataclass
class Mix:
    """What a set of CPUs does throughout the run (see the module docstring)."""

    cpus: tuple[int, ...] | str = "all"
    kind: str = "random"
    alloc: float = 0.5
    orders: dict[int, float] = field(default_factory=lambda: {0: 1.0})
    migratetypes: dict[str, float] = field(default_factory=lambda: {"movable": 1.0})
    batch_free: float = 0.0
    batch: int = 31
    max_held: int = 4096
    prefill: int = 0
    weight: float = 1.0
    preempt: float = 0.0
    preempt_delay: int = 0


@dataclass
class Burst:
    """At step ``at``, ``cpu`` allocates ``count`` blocks and frees them ``hold`` steps
    later."""

    at: int
    cpu: int
    count: int
    order: int = 0
    migratetype: str = "movable"
    hold: int = 1000


@dataclass
class Event:
    """A long operation run step by step on ``cpu`` from step ``at``: ``offline`` or
    ``online`` of a memory block (``block``: an id, ``"busiest"`` = the online block of
    the highest populated zone holding the most pages in use, ``"last-offlined"``), or
    ``alloc_contig`` of ``nr_pages`` from ``start_pfn`` and ``free_contig`` of the range
    the last successful ``alloc_contig`` got."""

    at: int
    cpu: int
    op: str
    block: int | str | None = None
    online_type: str = "online"
    start_pfn: int | None = None
    nr_pages: int | None = None
    max_retries: int | None = 100


@dataclass
class Workload:
    """A whole workload; ``duration`` is in simulated steps (each page operation of the
    mixes and each step of the runtime's contexts is one), ``max_steps`` the bound past
    which a run stops even if an event is still running."""

    name: str = "workload"
    description: str = ""
    duration: int = 100_000
    max_steps: int = 20_000_000
    sample_every: int = 1000
    check_every: int = 0
    load: float = 32.0
    mixes: list[Mix] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: the machine's CPU count (the default of ``--cpus``), and the machine itself
    #: when no preset or /proc file is given (see the module docstring)
    cpus: int | None = None
    machine: MachineSpec | None = None
    source: str = "<python>"

    def __post_init__(self) -> None:
        validate(self)

    def named_cpus(self) -> int:
        """One more than the highest CPU the workload names (at least 1): the CPU count
        a ``[machine]`` gets without ``cpus``."""
        top = [c for mix in self.mixes if not isinstance(mix.cpus, str) for c in mix.cpus]
        top += [b.cpu for b in self.bursts] + [e.cpu for e in self.events]
        return max(top, default=0) + 1

    def to_dict(self) -> dict[str, Any]:
        """The workload as the results file records it (TOML-shaped, keys as strings;
        ``cpus`` and ``machine`` only when given, so that older files keep their
        bytes)."""
        out = asdict(self)
        out.pop("source")
        for key in ("cpus", "machine"):
            if out[key] is None:
                del out[key]
        for mix in out["mixes"]:
            mix["orders"] = {str(k): v for k, v in mix["orders"].items()}
            if isinstance(mix["cpus"], tuple):
                mix["cpus"] = list(mix["cpus"])
        return out


# =======================================================================================
# Validation


def _err(w: Workload, key: str, problem: str) -> WorkloadError:
    return WorkloadError(f"{w.source}: {key}: {problem}")


def _nonneg_int(w: Workload, key: str, v: object, minimum: int = 0) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(w, key, f"expected an integer, got {v!r}")
    if v < minimum:
        raise _err(w, key, f"must be at least {minimum}, got {v}")


def _finite(v: object) -> TypeGuard[int | float]:
    """A real number: not a bool, not NaN or infinite (TOML has ``nan`` and ``inf``)."""
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _fraction(w: Workload, key: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _err(w, key, f"expected a number, got {v!r}")
    if not 0 <= v <= 1:
        raise _err(w, key, f"must be between 0 and 1, got {v}")


def _weights(w: Workload, key: str, table: object, names: dict[str, int] | None) -> None:
    if not isinstance(table, dict) or not table:
        raise _err(w, key, "expected a non-empty table of weights")
    for k, v in table.items():
        if names is not None and k not in names:
            raise _err(w, f"{key}.{k}", f"unknown migratetype (one of {', '.join(names)})")
        if not _finite(v) or v < 0:
            raise _err(w, f"{key}.{k}", f"expected a weight >= 0, got {v!r}")
    if not sum(table.values()):
        raise _err(w, key, "every weight is 0")


def parse_cpus(spec: object, where: str = "cpus") -> tuple[int, ...] | str:
    """``"all"``, ``"1-7"``, ``"0,2-3"`` or a list of ints."""
    if spec == "all":
        return "all"
    if isinstance(spec, list | tuple):
        if not spec or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                               for c in spec):
            raise ValueError(f"{where}: expected CPU numbers, got {spec!r}")
        return tuple(spec)
    if isinstance(spec, str):
        out: list[int] = []
        try:
            for part in spec.split(","):
                lo, _, hi = part.strip().partition("-")
                a = int(lo)
                b = int(hi) if hi else a
                if a < 0 or b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
        except ValueError:
            raise ValueError(f"{where}: expected 'all', '1-7' or '0,2-3', got {spec!r}") \
                from None
        return tuple(out)
    raise ValueError(f"{where}: expected 'all', a range like '1-7' or a list, got {spec!r}")


def validate(w: Workload) -> None:
    """Check everything that does not depend on the machine."""
    for key in ("name", "description"):
        if not isinstance(getattr(w, key), str):
            raise _err(w, f"workload.{key}", f"expected a string, got {getattr(w, key)!r}")
    for key in ("duration", "max_steps", "sample_every"):
        _nonneg_int(w, f"workload.{key}", getattr(w, key), 1)
    _nonneg_int(w, "workload.check_every", w.check_every)
    if w.cpus is not None:
        _nonneg_int(w, "workload.cpus", w.cpus, 1)
        if w.cpus > MAX_CPUS:
            raise _err(w, "workload.cpus", f"must be at most {MAX_CPUS}, got {w.cpus}")
    if w.machine is not None and not isinstance(w.machine, MachineSpec):
        raise _err(w, "machine", f"expected a MachineSpec, got {w.machine!r}")
    if not _finite(w.load) or w.load < 0:
        raise _err(w, "workload.load", f"expected a number >= 0, got {w.load!r}")
    if w.load > MAX_LOAD:
        raise _err(w, "workload.load", f"must be at most {MAX_LOAD:g}, got {w.load!r}")
    if w.max_steps < w.duration:
        raise _err(w, "workload.max_steps", f"{w.max_steps} is below the duration "
                   f"{w.duration}")
    for i, mix in enumerate(w.mixes):
        key = f"mix[{i}]"
        try:
            mix.cpus = parse_cpus(mix.cpus, f"{key}.cpus")
        except ValueError as e:
            raise WorkloadError(f"{w.source}: {e}") from None
        if mix.kind not in MIX_KINDS:
            raise _err(w, f"{key}.kind", f"unknown kind {mix.kind!r} (one of "
                       f"{', '.join(MIX_KINDS)})")
        for name in ("alloc", "batch_free", "preempt"):
            _fraction(w, f"{key}.{name}", getattr(mix, name))
        _weights(w, f"{key}.orders", mix.orders, None)
        for order in mix.orders:
            if isinstance(order, bool) or not isinstance(order, int) or order < 0:
                raise _err(w, f"{key}.orders", f"order {order!r} is not an order")
        _weights(w, f"{key}.migratetypes", mix.migratetypes, MIGRATETYPES)
        _nonneg_int(w, f"{key}.batch", mix.batch, 1)
        _nonneg_int(w, f"{key}.max_held", mix.max_held, 1)
        _nonneg_int(w, f"{key}.prefill", mix.prefill)
        _nonneg_int(w, f"{key}.preempt_delay", mix.preempt_delay)
        if not _finite(mix.weight) or mix.weight <= 0:
            raise _err(w, f"{key}.weight", f"expected a number > 0, got {mix.weight!r}")
    for i, b in enumerate(w.bursts):
        key = f"burst[{i}]"
        for name, lo in (("at", 0), ("cpu", 0), ("count", 1), ("order", 0), ("hold", 0)):
            _nonneg_int(w, f"{key}.{name}", getattr(b, name), lo)
        if b.migratetype not in MIGRATETYPES:
            raise _err(w, f"{key}.migratetype", f"unknown migratetype {b.migratetype!r}")
        if b.at >= w.duration:
            raise _err(w, f"{key}.at", f"step {b.at} is not before the end of the run "
                       f"(workload.duration {w.duration}): the burst would never run")
    for i, ev in enumerate(w.events):
        key = f"event[{i}]"
        _nonneg_int(w, f"{key}.at", ev.at)
        if ev.at >= w.max_steps:
            raise _err(w, f"{key}.at", f"step {ev.at} is past the last step a run may "
                       f"take (workload.max_steps {w.max_steps}): it would never start")
        _nonneg_int(w, f"{key}.cpu", ev.cpu)
        if ev.op not in EVENT_OPS:
            raise _err(w, f"{key}.op", f"unknown operation {ev.op!r} (one of "
                       f"{', '.join(EVENT_OPS)})")
        if ev.op in ("offline", "online"):
            if ev.block is None:
                raise _err(w, f"{key}.block", f"{ev.op} needs a block (an id or "
                           f"{' / '.join(BLOCK_WORDS)})")
            if isinstance(ev.block, str):
                if ev.block not in BLOCK_WORDS:
                    raise _err(w, f"{key}.block", f"unknown block {ev.block!r}")
            else:
                _nonneg_int(w, f"{key}.block", ev.block)
        if ev.online_type not in ONLINE_TYPES:
            raise _err(w, f"{key}.online_type", f"one of {', '.join(ONLINE_TYPES)}")
        if ev.op == "alloc_contig":
            if ev.start_pfn is None or ev.nr_pages is None:
                raise _err(w, key, "alloc_contig needs start_pfn and nr_pages")
            _nonneg_int(w, f"{key}.start_pfn", ev.start_pfn)
            _nonneg_int(w, f"{key}.nr_pages", ev.nr_pages, 1)
        if ev.max_retries is not None:
            _nonneg_int(w, f"{key}.max_retries", ev.max_retries, 1)


def check_against(w: Workload, nr_cpus: int, nr_orders: int, *,
                  managed_pages: int | None = None, end_pfn: int | None = None,
                  block_ids: set[int] | None = None) -> None:
    """Check what depends on the machine: CPU numbers and orders, and (when given) what
    the prefills can hold, the pfns of contiguous allocations and the memory blocks."""
    def cpu_ok(key: str, cpu: int) -> None:
        if cpu >= nr_cpus:
            raise _err(w, key, f"CPU {cpu} does not exist (the machine has {nr_cpus})")
    for i, mix in enumerate(w.mixes):
        if not isinstance(mix.cpus, str):
            for cpu in mix.cpus:
                cpu_ok(f"mix[{i}].cpus", cpu)
        for order in mix.orders:
            if order >= nr_orders:
                raise _err(w, f"mix[{i}].orders", f"order {order} is above the largest, "
                           f"{nr_orders - 1}")
    for i, b in enumerate(w.bursts):
        cpu_ok(f"burst[{i}].cpu", b.cpu)
        if b.order >= nr_orders:
            raise _err(w, f"burst[{i}].order", f"order {b.order} is above the largest, "
                       f"{nr_orders - 1}")
        if managed_pages is not None and b.count << b.order > managed_pages:
            raise _err(w, f"burst[{i}].count", f"{b.count} blocks of order {b.order} are "
                       f"{b.count << b.order} pages; the machine manages {managed_pages}")
    for i, e in enumerate(w.events):
        cpu_ok(f"event[{i}].cpu", e.cpu)
        if e.op in ("offline", "online") and isinstance(e.block, int) \
                and block_ids is not None and e.block not in block_ids:
            have = f"{min(block_ids)}-{max(block_ids)}" if block_ids else "none"
            raise _err(w, f"event[{i}].block", f"memory block {e.block} does not exist "
                       f"(the machine's memory blocks: {have})")
        if e.op == "alloc_contig" and end_pfn is not None and e.start_pfn is not None \
                and e.nr_pages is not None and e.start_pfn + e.nr_pages > end_pfn:
            raise _err(w, f"event[{i}]", f"alloc_contig of pfns [{e.start_pfn}, "
                       f"{e.start_pfn + e.nr_pages}) runs past the machine's last pfn, "
                       f"{end_pfn - 1}")
    if managed_pages is not None:
        # every prefill allocation beyond the machine's memory fails, one by one
        need = 0
        owned: set[int] = set()  # the first mix that names a CPU owns it (the runner's rule)
        for mix in w.mixes:
            cpus = set(range(nr_cpus) if isinstance(mix.cpus, str) else mix.cpus) - owned
            owned |= cpus
            need += mix.prefill * len(cpus) * (1 << min(mix.orders, default=0))
        if need > managed_pages:
            raise _err(w, "mix.prefill", f"the prefills need at least {need} pages; the "
                       f"machine manages {managed_pages}")


# =======================================================================================
# TOML

_TOP = {"workload", "mix", "burst", "event", "machine"}
_WORKLOAD_KEYS = {"name", "description", "duration", "max_steps", "sample_every",
                  "check_every", "load", "cpus"}


def _fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def workload_from_dict(data: dict[str, Any], source: str = "<dict>") -> Workload:
    """Build a workload from TOML-shaped data (what :func:`load_workload` parsed)."""
    def bad(key: str, problem: str) -> WorkloadError:
        return WorkloadError(f"{source}: {key}: {problem}")
    for key in data:
        if key not in _TOP:
            raise bad(key, f"unknown table (expected {', '.join(sorted(_TOP))})")
    head = data.get("workload", {})
    if not isinstance(head, dict):
        raise bad("workload", "expected a table")
    for key in head:
        if key not in _WORKLOAD_KEYS:
            raise bad(f"workload.{key}", "unknown key")

    def items(name: str, cls: type) -> list[dict[str, Any]]:
        rows = data.get(name, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise bad(name, f"expected an array of tables ([[{name}]])")
        for i, row in enumerate(rows):
            for key in row:
                if key not in _fields(cls):
                    raise bad(f"{name}[{i}].{key}", "unknown key")
            for f in fields(cls):
                if f.name not in row and f.default is MISSING \
                        and f.default_factory is MISSING:
                    raise bad(f"{name}[{i}].{f.name}", "missing")
        return rows

    mixes = []
    for i, row in enumerate(items("mix", Mix)):
        row = dict(row)
        if "orders" in row:
            orders = row["orders"]
            if not isinstance(orders, dict):
                raise bad(f"mix[{i}].orders", "expected a table like { 0 = 90, 3 = 10 }")
            try:
                row["orders"] = {int(k): v for k, v in orders.items()}
            except ValueError:
                raise bad(f"mix[{i}].orders", f"keys must be orders, got "
                          f"{', '.join(map(repr, orders))}") from None
        mixes.append(Mix(**row))
    bursts = [Burst(**row) for row in items("burst", Burst)]
    events = [Event(**row) for row in items("event", Event)]
    machine = None
    if "machine" in data:
        try:
            machine = machine_from_table(data["machine"], source)
        except ScenarioError as e:  # already "source: machine.key: problem"
            raise WorkloadError(str(e)) from None
    w = Workload(**head, mixes=mixes, bursts=bursts, events=events, machine=machine,
                 source=source)
    if not (mixes or bursts or events):
        raise bad("workload", "nothing to run: no [[mix]], [[burst]] or [[event]]")
    return w


def load_workload(path: str | Path) -> Workload:
    """Read a TOML workload file."""
    p = Path(path)
    try:
        text = read_toml_text(p)
    except ScenarioError as e:
        raise WorkloadError(str(e)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise WorkloadError(toml_error(str(p), text, e)) from None
    try:
        return workload_from_dict(data, str(p))
    except TypeError as e:
        raise WorkloadError(f"{p}: {e}") from None
