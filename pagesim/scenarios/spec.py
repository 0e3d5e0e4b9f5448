# SPDX-License-Identifier: GPL-2.0-only
"""Checker scenarios written as TOML files (``pagesim check my.toml``).

A scenario file says what a built-in scenario says in Python: the machine, the pages
already in use or parked before the run, what each CPU does, and which properties must
hold. It exists so that a question such as "does offline still finish if CPU1 frees in
batches?" needs no Python, and so that a counterexample names a file anyone can read.
README.md ("Writing your own scenario") documents the format; ``examples/offline.toml``
is a complete one.

The CPUs' programs are built from the same blocks as the built-in scenarios
(:mod:`pagesim.scenarios.offline`, :mod:`pagesim.scenarios.allocator`): pages are held
and unmapped as tasks hold them (:func:`~pagesim.model.migrate.hold`,
:func:`~pagesim.model.migrate.unmap_and_put`), batched frees go through
``release_pages`` and ``free_unref_page_list``, the drain step is the allocator
scenarios' marked ``drain_all_pages``, the termination check gets the same fairness
(the offlining CPU gets more rounds only once every other CPU has finished its
program), and the final conservation check is theirs. A TOML copy of a built-in
scenario therefore explores the same interleavings (the tests compare them).

Everything is validated before anything runs, and a mistake is one line,
``FILE: key.path: problem`` (:class:`ScenarioFileError`), so the command line can print
it and exit 2. What can only be known once the machine exists (a parked page the
pcplist would not keep) is found when the program is built, with the same form.

The ``[machine]`` table is read by :func:`machine_from_table` and booted by
:meth:`MachineSpec.build`; anything else that describes a machine in TOML (the
simulator's workloads) should use those two, so a machine means the same everywhere.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pagesim.model.build import build_machine
from pagesim.model.contig import (
    alloc_contig_range,
    free_contig_range,
    pfn_max_align_down,
    pfn_max_align_up,
)
from pagesim.model.geometry import X86_64, Geometry, GeometryError
from pagesim.model.kernels import kernel as kernel_of
from pagesim.model.memory_hotplug import (
    ONLINE_TYPES,
    RETRY_BOUND,
    HotplugEvent,
    block_is_online,
    hotplug_state,
    memory_block,
    offline_pages,
    online_memory_block,
)
from pagesim.model.migrate import hold, unmap_and_put
from pagesim.model.mmzone import (
    ALLOC_NO_WATERMARKS,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    HeldPage,
    Machine,
    PG_lru,
    ZoneLayout,
)
from pagesim.model.page_alloc import (
    __free_pages,
    alloc_pages,
    drain_all_pages,
    free_unref_page_list,
    set_pageblock_migratetype,
)
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.executor import Program
from pagesim.runtime.ops import READ_ONCE_IDX, WRITE_ONCE_IDX, choose
from pagesim.runtime.sequential import call
from pagesim.scenarios import Scenario, ScenarioError
from pagesim.scenarios import allocator as alloc_sc
from pagesim.scenarios import offline as offline_sc

Gen = Generator[Any, Any, Any]

#: migratetype names in files (pageblock types and allocations)
MIGRATETYPES = {"unmovable": MIGRATE_UNMOVABLE, "movable": MIGRATE_MOVABLE,
                "reclaimable": MIGRATE_RECLAIMABLE}
#: the scenario files that ship with pagesim (``offline.toml``: the README's example)
EXAMPLES = Path(__file__).parent / "examples"
#: the CPU count ``id = "others"`` may grow to with ``--cpus``
MAX_CPUS = 8
DEFAULT_MAX_STEPS = 20000


class ScenarioFileError(ScenarioError):
    """A scenario file that cannot run: ``FILE: key.path: problem``."""


# =======================================================================================
# Reading values with their key paths


class _Reader:
    """Typed access to TOML values that names the file and key path in every error."""

    def __init__(self, source: str) -> None:
        self.source = source
        #: where each parsed step was (by identity), for errors about whole programs
        self.keys: dict[int, str] = {}

    def err(self, key: str, problem: str) -> ScenarioFileError:
        return ScenarioFileError(f"{self.source}: {key}: {problem}")

    def table(self, value: object, key: str, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(key, f"expected a table, got {_show(value)}")
        names = list(allowed)
        for k in value:
            if k not in names:
                raise self.err(_join(key, k), f"unknown key (expected one of {', '.join(names)})")
        return value

    def int_(self, value: object, key: str, minimum: int = 0,
             maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected an integer, got {_show(value)}")
        if value < minimum:
            raise self.err(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.err(key, f"must be at most {maximum}, got {value}")
        return value

    def str_(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self.err(key, f"expected a string, got {_show(value)}")
        return value

    def bool_(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(key, f"expected true or false, got {_show(value)}")
        return value

    def list_(self, value: object, key: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.err(key, f"expected an array, got {_show(value)}")
        return value

    def name(self, value: object, key: str, names: Mapping[str, int], what: str) -> int:
        s = self.str_(value, key)
        if s not in names:
            raise self.err(key, f"unknown {what} {s!r} (one of {', '.join(names)})")
        return names[s]


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# =======================================================================================
# [machine]

MACHINE_KEYS = ("zone_pages", "pageblock_order", "nr_orders", "section_order", "pcp_high",
                "pcp_batch", "min_free_kbytes")


@dataclass(frozen=True)
class MachineSpec:
    """One Normal zone from pfn 0, memory blocks of one section each, pcp limits pinned
    (or the kernel's formulas when ``pcp_high`` is None), watermarks from
    ``min_free_kbytes`` (0: none, so that small machines never hit a watermark)."""

    zone_pages: int
    pageblock_order: int = X86_64.pageblock_order
    nr_orders: int = X86_64.nr_orders
    section_order: int = X86_64.section_order
    pcp_high: int | None = None
    pcp_batch: int | None = None
    min_free_kbytes: int = 0

    @property
    def geometry(self) -> Geometry:
        return Geometry(pageblock_order=self.pageblock_order, nr_orders=self.nr_orders,
                        section_order=self.section_order, thp_order=0)

    @property
    def pageblocks(self) -> int:
        return self.zone_pages >> self.pageblock_order

    @property
    def section_pages(self) -> int:
        return 1 << self.section_order

    @property
    def memory_blocks(self) -> int:
        return self.zone_pages >> self.section_order

    def build(self, kernel: str, cpus: int,
              reserved: Sequence[tuple[int, int]] = ()) -> Machine:
        """Boot the machine for ``kernel`` and ``cpus``, with ``reserved`` pfn ranges
        kept from the buddy, and pin the pcp limits. Memory blocks are one section."""
        m = build_machine([ZoneLayout("Normal", 0, self.zone_pages, reserved=tuple(reserved))],
                          kern=kernel_of(kernel), geom=self.geometry, nr_cpus=cpus,
                          min_free_kbytes=self.min_free_kbytes)
        if self.pcp_high is not None and self.pcp_batch is not None:
            set_pcp_limits(m, m.zone("Normal"), self.pcp_high, self.pcp_batch)
        hotplug_state(m, sections_per_block=1)
        return m


def machine_from_table(table: object, source: str, key: str = "machine") -> MachineSpec:
    """Validate a ``[machine]`` table (``key`` is its path, for messages)."""
    r = _Reader(source)
    t = r.table(table, key, MACHINE_KEYS)
    if "zone_pages" not in t:
        raise r.err(_join(key, "zone_pages"), "missing (the zone's size in pages)")
    vals: dict[str, Any] = {"zone_pages": r.int_(t["zone_pages"], _join(key, "zone_pages"), 1)}
    for name, lo in (("pageblock_order", 0), ("nr_orders", 1), ("section_order", 0),
                     ("min_free_kbytes", 0), ("pcp_high", 0), ("pcp_batch", 1)):
        if name in t:
            vals[name] = r.int_(t[name], _join(key, name), lo)
    if ("pcp_high" in t) != ("pcp_batch" in t):
        missing = "pcp_batch" if "pcp_high" in t else "pcp_high"
        raise r.err(_join(key, missing), "missing (give pcp_high and pcp_batch together, "
                    "or neither for the kernel's formulas)")
    spec = MachineSpec(**vals)
    try:
        spec.geometry  # noqa: B018  (raises for impossible sizes)
    except GeometryError as e:
        param = str(e).split(" ", 1)[0]
        raise r.err(_join(key, param if param in MACHINE_KEYS else "pageblock_order"),
                    str(e)) from None
    if spec.zone_pages % spec.section_pages:
        raise r.err(_join(key, "zone_pages"),
                    f"{spec.zone_pages} is not a whole number of sections of "
                    f"{spec.section_pages} pages (section_order {spec.section_order})")
    return spec


# =======================================================================================
# Steps


@dataclass(frozen=True)
class Alloc:
    """alloc_pages(order, migratetype); the page is held (and, if named, named)."""

    order: int = 0
    migratetype: int = MIGRATE_MOVABLE
    name: str | None = None


@dataclass(frozen=True)
class Free:
    """Unmap and put a held page: the oldest, or the one named."""

    name: str | None = None


@dataclass(frozen=True)
class FreeAll:
    """Unmap and put every held page, oldest first, one at a time."""


@dataclass(frozen=True)
class BatchFree:
    """release_pages() of every held page, then one free_unref_page_list()."""


@dataclass(frozen=True)
class Drain:
    """drain_all_pages(zone)."""


@dataclass(frozen=True)
class Offline:
    """offline_pages() of a memory block, giving up after ``retries`` failed rounds."""

    block: int
    retries: int = offline_sc.MAX_RETRIES


@dataclass(frozen=True)
class Online:
    """Write ``online_type`` to a memory block's state (nothing if it is online)."""

    block: int
    online_type: str = "online"


@dataclass(frozen=True)
class AllocContig:
    """alloc_contig_range(start, start + pages)."""

    start: int
    pages: int


@dataclass(frozen=True)
class FreeContig:
    """free_contig_range() of the oldest range this CPU got from alloc_contig."""


@dataclass(frozen=True)
class Choose:
    """A nondeterministic choice between the options that can run."""

    options: tuple[Step, ...]


@dataclass(frozen=True)
class Seq:
    """``steps`` in order, ``repeat`` times."""

    steps: tuple[Step, ...]
    repeat: int = 1


Step = Alloc | Free | FreeAll | BatchFree | Drain | Offline | Online | AllocContig | \
    FreeContig | Choose | Seq

_BARE: dict[str, Callable[[], Step]] = {
    "alloc": Alloc, "free": Free, "free_all": FreeAll, "batch_free": BatchFree,
    "drain": Drain, "free_contig": FreeContig}
STEP_KEYS = ("alloc", "free", "free_all", "batch_free", "drain", "offline", "online",
             "alloc_contig", "free_contig", "choose", "steps")


def _walk(steps: Iterable[Step]) -> Iterable[Step]:
    for st in steps:
        yield st
        if isinstance(st, Choose):
            yield from _walk(st.options)
        elif isinstance(st, Seq):
            yield from _walk(st.steps)


# =======================================================================================
# The whole file


@dataclass(frozen=True)
class Placement:
    """Pages put in a state before the run: ``pfns`` exactly, or ``count`` pages (of
    ``pageblock`` if given, else of the zone), the lowest ones still unclaimed."""

    pfns: tuple[int, ...] = ()
    count: int = 0
    pageblock: int | None = None
    migratetype: int = MIGRATE_MOVABLE
    #: ``held = N``: allocated through the allocator by the CPU instead (see README)
    by_allocator: bool = False


@dataclass(frozen=True)
class CpuSpec:
    """A ``[[cpu]]`` table: ``ids`` empty means every CPU no other table names."""

    index: int
    ids: tuple[int, ...]
    program: tuple[Step, ...]
    held: Placement = Placement()
    parked: Placement = Placement()
    max_held: int | None = None

    @property
    def others(self) -> bool:
        return not self.ids


@dataclass(frozen=True)
class Properties:
    isolation_safety: bool = False
    offline_terminates: bool = False
    nothing_lost: bool = True
    invariants_when_quiet: bool = False
    max_steps: int = DEFAULT_MAX_STEPS


@dataclass(frozen=True)
class ScenarioSpec:
    """A validated scenario file (see the module docstring)."""

    name: str
    description: str
    cpus: int
    machine: MachineSpec
    cpu_specs: tuple[CpuSpec, ...]
    properties: Properties
    kernel: str | None = None
    expected: str = ""
    reserved: tuple[int, ...] = ()
    pageblock_types: tuple[tuple[int, int], ...] = ()
    free_first: tuple[int, ...] = ()
    source: str = "<dict>"

    @property
    def min_cpus(self) -> int:
        return max((max(c.ids) + 1 for c in self.cpu_specs if c.ids), default=1)

    @property
    def max_cpus(self) -> int:
        return MAX_CPUS if any(c.others for c in self.cpu_specs) else self.cpus

    def programs(self, cpus: int) -> dict[int, CpuSpec]:
        """Which table each CPU runs (CPUs no table names are idle)."""
        out: dict[int, CpuSpec] = {}
        for c in self.cpu_specs:
            for i in c.ids:
                out[i] = c
        for c in self.cpu_specs:
            if c.others:
                for i in range(cpus):
                    out.setdefault(i, c)
        return out

    def program(self, kernel: str, cpus: int | None = None) -> Program:
        """The checker's program for ``kernel`` and ``cpus`` (default: the file's).

        The state is built once here, so that what only the machine can tell (a parked
        page the pcplist does not keep) is an error now, not in the middle of a search."""
        n = self.cpus if cpus is None else cpus
        kern = kernel_of(kernel).name

        def setup() -> tuple[TomlState, dict[int, Any]]:
            s = build_state(self, kern, n)
            return s, {c: run_cpu(s, c, cs) for c, cs in self.programs(n).items()}

        build_state(self, kern, n)
        p = self.properties
        checks: list[Callable[[Any], str | None]] = []
        finals: list[Callable[[Any], str | None]] = []
        if p.invariants_when_quiet:
            checks.append(invariants_when_quiet)
        if p.offline_terminates:
            finals.append(offline_terminates)
        if p.nothing_lost:
            finals.append(nothing_lost)
        return Program(f"{self.name}({kern}, {n} cpus)", setup, checks=checks,
                       final_checks=finals, max_steps=p.max_steps,
                       description=self.description,
                       observes=_observed if p.invariants_when_quiet else None,
                       snapshot=_snapshot)

    def scenario(self) -> Scenario:
        """The file as a :class:`Scenario`, for everything that takes one."""
        return Scenario(self.name, self.description, self.program,
                        self.expected or "see the file", min_cpus=self.min_cpus,
                        max_cpus=self.max_cpus, default_cpus=self.cpus,
                        default_kernel=self.kernel, source=self.source)


TOP_KEYS = ("name", "description", "kernel", "cpus", "expected", "machine", "initial", "cpu",
            "properties")
INITIAL_KEYS = ("reserved", "pageblock_types", "free_first")
CPU_KEYS = ("id", "program", "held", "parked", "max_held")
PLACEMENT_KEYS = ("pfns", "count", "pageblock", "migratetype")
PROPERTY_KEYS = ("isolation_safety", "offline_terminates", "nothing_lost",
                 "invariants_when_quiet", "max_steps")


def read_toml_text(p: Path) -> str:
    """A TOML file's text; bytes that are not UTF-8 are an error naming the file."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioFileError(f"{p}: not a TOML file (byte {e.start} is not UTF-8 "
                                "text)") from None


def toml_error(source: str, text: str, e: tomllib.TOMLDecodeError) -> str:
    """``source:line: problem (column N)`` for a TOML syntax error; an error at the end
    of the document is on its last line (a file cut short, most often)."""
    msg = str(e)
    at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if at:
        return f"{source}:{at.group(1)}: {msg[:at.start()]} (column {at.group(2)})"
    end = re.search(r"\s*\(at end of document\)$", msg)
    if end:
        last = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        return (f"{source}:{max(last, 1)}: {msg[:end.start()]} at the end of the file "
                "(is it cut short?)")
    return f"{source}: {msg}"


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario file; the spec remembers the file's absolute path."""
    p = Path(path)
    source = str(p)
    text = read_toml_text(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioFileError(toml_error(source, text, e)) from None
    # messages name the file as given; the spec keeps its absolute path (for replay)
    return replace(scenario_from_dict(data, source), source=str(p.resolve()))


def scenario_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ScenarioSpec:
    """Validate TOML-shaped data (what a scenario file parses to); Python users can
    build a scenario this way without a file."""
    r = _Reader(source)
    top = r.table(dict(data), "", TOP_KEYS)
    for key in ("name", "cpus", "machine"):
        if key not in top:
            raise r.err(key, "missing")
    name = r.str_(top["name"], "name")
    if not name.strip():
        raise r.err("name", "must not be empty")
    description = r.str_(top.get("description", ""), "description")
    expected = r.str_(top.get("expected", ""), "expected")
    cpus = r.int_(top["cpus"], "cpus", 1, MAX_CPUS)
    kern = None
    if "kernel" in top:
        kern = r.str_(top["kernel"], "kernel")
        try:
            kern = kernel_of(kern).name
        except ValueError as e:
            raise r.err("kernel", str(e)) from None
    machine = machine_from_table(top["machine"], source)

    initial = r.table(top.get("initial", {}), "initial", INITIAL_KEYS)
    reserved = _pfn_list(r, initial.get("reserved", []), "initial.reserved", machine)
    types: dict[int, int] = {}
    pt = initial.get("pageblock_types", {})
    if not isinstance(pt, dict):
        raise r.err("initial.pageblock_types", 'expected a table like { 0 = "unmovable" }')
    for k, v in pt.items():
        key = f"initial.pageblock_types.{k}"
        try:
            blk = int(k)
        except ValueError:
            raise r.err(key, "keys are pageblock numbers") from None
        _in_range(r, key, blk, machine.pageblocks, "pageblock")
        types[blk] = r.name(v, key, MIGRATETYPES, "migratetype")
    free_first = []
    for i, v in enumerate(r.list_(initial.get("free_first", []), "initial.free_first")):
        key = f"initial.free_first[{i}]"
        _in_range(r, key, r.int_(v, key), machine.pageblocks, "pageblock")
        if v in free_first:
            raise r.err(key, f"pageblock {v} is listed twice")
        free_first.append(v)

    rows = top.get("cpu", [])
    if not isinstance(rows, list) or not rows:
        raise r.err("cpu", "expected one [[cpu]] table or more (what the CPUs run)")
    cpu_specs = [_cpu(r, row, i, cpus, machine) for i, row in enumerate(rows)]
    _check_cpus(r, cpu_specs, cpus)

    props_t = r.table(top.get("properties", {}), "properties", PROPERTY_KEYS)
    flags = {k: r.bool_(v, f"properties.{k}") for k, v in props_t.items()
             if k != "max_steps"}
    props = Properties(
        isolation_safety=flags.get("isolation_safety", False),
        offline_terminates=flags.get("offline_terminates", False),
        nothing_lost=flags.get("nothing_lost", True),
        invariants_when_quiet=flags.get("invariants_when_quiet", False),
        max_steps=r.int_(props_t.get("max_steps", DEFAULT_MAX_STEPS),
                         "properties.max_steps", 1))
    steps = [st for c in cpu_specs for st in _walk(c.program)]
    if props.offline_terminates and not any(isinstance(st, Offline) for st in steps):
        raise r.err("properties.offline_terminates", "no CPU runs an offline step")
    if props.isolation_safety and not any(isinstance(st, Offline | AllocContig)
                                          for st in steps):
        raise r.err("properties.isolation_safety",
                    "no CPU runs an offline or alloc_contig step (nothing is isolated)")
    spec = ScenarioSpec(name, description, cpus, machine, tuple(cpu_specs), props, kern,
                        expected, tuple(reserved), tuple(sorted(types.items())),
                        tuple(free_first), source)
    assign_pages(spec, spec.cpus)
    return spec


def _in_range(r: _Reader, key: str, v: int, n: int, what: str) -> None:
    if not 0 <= v < n:
        raise r.err(key, f"{what} {v} is outside the zone ({what}s 0-{n - 1})")


def _pfn_list(r: _Reader, value: object, key: str, machine: MachineSpec) -> list[int]:
    out: list[int] = []
    for i, v in enumerate(r.list_(value, key)):
        k = f"{key}[{i}]"
        _in_range(r, k, r.int_(v, k), machine.zone_pages, "pfn")
        if v in out:
            raise r.err(k, f"pfn {v} is listed twice")
        out.append(v)
    return out


def _placement(r: _Reader, value: object, key: str, machine: MachineSpec,
               counted_by_allocator: bool) -> Placement:
    """``N``, ``[pfns]`` or ``{ pfns = [...] }`` / ``{ pageblock = B, count = N }``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Placement(count=r.int_(value, key), by_allocator=counted_by_allocator)
    if isinstance(value, list):
        return Placement(pfns=tuple(_pfn_list(r, value, key, machine)))
    t = r.table(value, key, PLACEMENT_KEYS)
    mt = MIGRATE_MOVABLE
    if "migratetype" in t:
        mt = r.name(t["migratetype"], _join(key, "migratetype"), MIGRATETYPES, "migratetype")
    if "pfns" in t:
        for other in ("count", "pageblock"):
            if other in t:
                raise r.err(_join(key, other), "give either pfns or count")
        return Placement(pfns=tuple(_pfn_list(r, t["pfns"], _join(key, "pfns"), machine)),
                         migratetype=mt)
    if "count" not in t:
        raise r.err(_join(key, "count"), "missing (or give pfns)")
    count = r.int_(t["count"], _join(key, "count"))
    blk = None
    if "pageblock" in t:
        blk = r.int_(t["pageblock"], _join(key, "pageblock"))
        _in_range(r, _join(key, "pageblock"), blk, machine.pageblocks, "pageblock")
        size = 1 << machine.pageblock_order
        if count > size:
            raise r.err(_join(key, "count"), f"{count} pages do not fit in a pageblock of "
                        f"{size}")
    return Placement(count=count, pageblock=blk, migratetype=mt)


def _cpu(r: _Reader, row: object, i: int, cpus: int, machine: MachineSpec) -> CpuSpec:
    key = f"cpu[{i}]"
    t = r.table(row, key, CPU_KEYS)
    if "id" not in t:
        raise r.err(f"{key}.id", 'missing (a CPU number, a list of them, or "others")')
    ids: tuple[int, ...]
    raw = t["id"]
    if raw == "others":
        ids = ()
    else:
        vals = raw if isinstance(raw, list) else [raw]
        if not vals:
            raise r.err(f"{key}.id", "an empty list names no CPU")
        for v in vals:
            if isinstance(v, str):
                raise r.err(f"{key}.id", f'expected a CPU number or "others", got {v!r}')
            r.int_(v, f"{key}.id")
            if v >= cpus:
                raise r.err(f"{key}.id", f"CPU {v} does not exist (cpus = {cpus})")
        ids = tuple(vals)
    if "program" not in t:
        raise r.err(f"{key}.program", "missing (a list of steps)")
    program = tuple(_step(r, st, f"{key}.program[{j}]", machine)
                    for j, st in enumerate(r.list_(t["program"], f"{key}.program")))
    held = _placement(r, t["held"], f"{key}.held", machine, True) if "held" in t \
        else Placement()
    parked = _placement(r, t["parked"], f"{key}.parked", machine, False) if "parked" in t \
        else Placement()
    if parked.migratetype != MIGRATE_MOVABLE:
        raise r.err(f"{key}.parked.migratetype", "parked pages are freed as the type of "
                    "their pageblock; set pageblock_types instead")
    if ids == () and (held.pfns or parked.pfns or held.pageblock is not None
                      or parked.pageblock is not None):
        raise r.err(key, 'a table for "others" may hold or park pages only by count')
    max_held = r.int_(t["max_held"], f"{key}.max_held", 1) if "max_held" in t else None
    spec = CpuSpec(i, ids, program, held, parked, max_held)
    _check_program(r, spec, key)
    return spec


def _step(r: _Reader, value: object, key: str, machine: MachineSpec) -> Step:
    if isinstance(value, str):
        if value in _BARE:
            bare = _BARE[value]()
            r.keys[id(bare)] = key
            return bare
        raise r.err(key, f"unknown step {value!r} (one of {', '.join(STEP_KEYS)})")
    t = r.table(value, key, (*STEP_KEYS, "repeat"))
    actions = [k for k in t if k != "repeat"]
    if len(actions) != 1:
        raise r.err(key, f"a step is one of {', '.join(STEP_KEYS)} (optionally with "
                    f"repeat), got {', '.join(actions) or 'nothing'}")
    what = actions[0]
    k = f"{key}.{what}"
    v = t[what]
    st: Step
    if what == "alloc":
        a = r.table(v, k, ("order", "migratetype", "name"))
        order = r.int_(a.get("order", 0), f"{k}.order", 0, machine.nr_orders - 1)
        mt = r.name(a.get("migratetype", "movable"), f"{k}.migratetype", MIGRATETYPES,
                    "migratetype")
        nm = r.str_(a["name"], f"{k}.name") if "name" in a else None
        st = Alloc(order, mt, nm)
    elif what == "free":
        st = Free() if v == "oldest" else Free(r.str_(v, k))
    elif what in ("free_all", "batch_free", "drain", "free_contig"):
        if v is not True and v != {}:
            raise r.err(k, f'takes no arguments: write "{what}"')
        st = _BARE[what]()
    elif what in ("offline", "online"):
        o = r.table(v, k, ("block", "retries") if what == "offline"
                    else ("block", "online_type"))
        if "block" not in o:
            raise r.err(f"{k}.block", "missing (a memory block number)")
        blk = r.int_(o["block"], f"{k}.block")
        _in_range(r, f"{k}.block", blk, machine.memory_blocks, "memory block")
        if what == "offline":
            st = Offline(blk, r.int_(o.get("retries", offline_sc.MAX_RETRIES),
                                     f"{k}.retries", 1))
        else:
            ot = r.str_(o.get("online_type", "online"), f"{k}.online_type")
            if ot not in ONLINE_TYPES:
                raise r.err(f"{k}.online_type", f"one of {', '.join(ONLINE_TYPES)}")
            if ot == "online_movable":
                raise r.err(f"{k}.online_type", "the machine has no Movable zone")
            st = Online(blk, ot)
    elif what == "alloc_contig":
        c = r.table(v, k, ("start", "pages"))
        for need in ("start", "pages"):
            if need not in c:
                raise r.err(f"{k}.{need}", "missing")
        start = r.int_(c["start"], f"{k}.start")
        _in_range(r, f"{k}.start", start, machine.zone_pages, "pfn")
        pages = r.int_(c["pages"], f"{k}.pages", 1)
        if start + pages > machine.zone_pages:
            raise r.err(f"{k}.pages", f"[{start}, {start + pages}) runs past the zone's "
                        f"{machine.zone_pages} pages")
        st = AllocContig(start, pages)
    elif what == "choose":
        opts = r.list_(v, k)
        if len(opts) < 2:
            raise r.err(k, "a choice needs two options or more")
        st = Choose(tuple(_step(r, o, f"{k}[{j}]", machine) for j, o in enumerate(opts)))
    else:  # steps
        body = r.list_(v, k)
        if not body:
            raise r.err(k, "an empty list of steps")
        st = Seq(tuple(_step(r, o, f"{k}[{j}]", machine) for j, o in enumerate(body)))
    if "repeat" in t:
        n = r.int_(t["repeat"], f"{key}.repeat", 1)
        st = Seq(st.steps, n) if isinstance(st, Seq) else Seq((st,), n)
    r.keys[id(st)] = key
    return st


def _check_program(r: _Reader, c: CpuSpec, key: str) -> None:
    """What a program can only get wrong as a whole: names it frees but never
    allocates, and batched frees of pages larger than one."""
    steps = list(_walk(c.program))
    names = {st.name for st in steps if isinstance(st, Alloc) and st.name}
    orders = {st.order for st in steps if isinstance(st, Alloc)}
    for st in steps:
        where = r.keys.get(id(st), key)
        if isinstance(st, Free) and st.name and st.name not in names:
            raise r.err(f"{where}.free", f"no alloc of this CPU names a page {st.name!r}")
        if isinstance(st, BatchFree) and any(o > 0 for o in orders):
            raise r.err(where, "batch_free frees order-0 pages (free_unref_page_list), but "
                        f"this CPU allocates order {max(orders)}")


def _check_cpus(r: _Reader, specs: Sequence[CpuSpec], cpus: int) -> None:
    seen: dict[int, int] = {}
    others = [c for c in specs if c.others]
    if len(others) > 1:
        raise r.err(f"cpu[{others[1].index}].id", '"others" is given twice')
    for c in specs:
        for i in c.ids:
            if i in seen:
                raise r.err(f"cpu[{c.index}].id", f"CPU {i} already runs cpu[{seen[i]}]")
            seen[i] = c.index
    offliners = [c for c in specs if any(isinstance(st, Offline) for st in _walk(c.program))]
    if any(c.others for c in offliners):
        raise r.err(f"cpu[{offliners[0].index}]", 'an offline step runs on named CPUs, '
                    'not on "others" (the others are what it waits for)')


def assign_pages(spec: ScenarioSpec, cpus: int) -> dict[int, tuple[list[int], list[int]]]:
    """The pfns each CPU holds and parks before the run (those placed by pfn, by
    pageblock or by count: the lowest still unclaimed), checked: every page exists, is
    managed, is placed once, and counts fit in what is left."""
    r = _Reader(spec.source)
    ms = spec.machine
    size = 1 << ms.pageblock_order
    owner: dict[int, str] = {p: "initial.reserved" for p in spec.reserved}
    cpu_of = spec.programs(cpus)
    out: dict[int, tuple[list[int], list[int]]] = {}
    by_allocator = 0
    for cpu in sorted(cpu_of):
        c = cpu_of[cpu]
        got: list[list[int]] = []
        for what, pl in (("held", c.held), ("parked", c.parked)):
            key = f"cpu[{c.index}].{what}"
            if pl.by_allocator:
                by_allocator += pl.count
                got.append([])
                continue
            if pl.pfns:
                for pfn in pl.pfns:
                    if pfn in owner:
                        raise r.err(key, f"pfn {pfn} is already {owner[pfn]}")
                pfns = list(pl.pfns)
            else:
                lo, hi = ((pl.pageblock * size, (pl.pageblock + 1) * size)
                          if pl.pageblock is not None else (0, ms.zone_pages))
                pfns = [p for p in range(lo, hi) if p not in owner][:pl.count]
                if len(pfns) < pl.count:
                    where = (f"pageblock {pl.pageblock}" if pl.pageblock is not None
                             else "the zone")
                    raise r.err(_join(key, "count") if isinstance(pl.pageblock, int) else key,
                                f"{pl.count} pages for CPU {cpu}, but {where} has only "
                                f"{len(pfns)} left with everything else placed")
            for p in pfns:
                owner[p] = f"{what} by CPU {cpu}"
            got.append(pfns)
        out[cpu] = (got[0], got[1])
    left = ms.zone_pages - len(owner)
    if by_allocator > left:
        c = next(c for c in spec.cpu_specs if c.held.by_allocator)
        raise r.err(f"cpu[{c.index}].held", f"{by_allocator} pages to allocate before the "
                    f"run, but only {left} of the zone's {ms.zone_pages} are left")
    return out


# =======================================================================================
# Building and running


@dataclass
class TomlState(offline_sc.OfflineState):
    """The offline scenarios' state plus what the steps of a file need."""

    #: the allocator scenarios' markers, sharing this machine (see _busy)
    alloc: alloc_sc.AllocState | None = None
    #: per CPU: named pages it holds
    names: dict[int, dict[str, HeldPage]] = field(default_factory=dict)
    #: per CPU: ranges it got from alloc_contig, oldest first
    contig: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    #: pageblocks some step isolates (what isolation_safety watches)
    watched: tuple[int, ...] = ()
    #: every offline call: its CPU, its log entry and its fairness hook
    offlines: list[tuple[int, HotplugEvent, WaitForOthers]] = field(default_factory=list)
    #: CPUs that write ``finished`` when their program ends
    workers: tuple[int, ...] = ()
    marks: bool = False
    properties: Properties = Properties()


class WaitForOthers(offline_sc._WaitForWorkers):
    """The fairness hook of the built-in offline scenarios, for any offlining CPU:
    more rounds only once every other CPU that runs a program without an offline has
    finished it. (The built-in waits for CPUs 1 and up, which is this for CPU0.)"""

    def __init__(self, s: TomlState, cpu: int) -> None:
        super().__init__(s)
        self.others = tuple(c for c in s.workers if c != cpu)
        self.alone = 0

    def __call__(self) -> Gen:
        for cpu in self.others:
            if not (yield READ_ONCE_IDX(self.s.finished, cpu, "finished")):
                return 0
        self.alone = 1
        return offline_sc.EXTRA_RETRIES

    def fast(self) -> int:
        if all(self.s.finished[c] for c in self.others):
            self.alone = 1
            return offline_sc.EXTRA_RETRIES
        return 0


def build_state(spec: ScenarioSpec, kernel: str, cpus: int) -> TomlState:
    """Boot the machine and put the initial pages in place (see README)."""
    r = _Reader(spec.source)
    ms = spec.machine
    m = ms.build(kernel, cpus, [(p, p + 1) for p in sorted(spec.reserved)])
    zone = m.zone("Normal")
    cpu_of = spec.programs(cpus)
    placed = assign_pages(spec, cpus)
    claimed = {p for held, parked in placed.values() for p in held + parked}
    if claimed or spec.pageblock_types or spec.free_first:
        _lay_out(spec, m, claimed)
    held: dict[int, list[HeldPage]] = {c: [] for c in range(cpus)}
    for cpu in sorted(cpu_of):
        c = cpu_of[cpu]
        for p in placed[cpu][0]:
            if c.held.migratetype != MIGRATE_MOVABLE:
                m.flags[p] &= ~PG_lru  # an unmovable page: offline cannot migrate it
            held[cpu].append(hold(m, f"cpu{cpu}", p))
        for p in placed[cpu][1]:
            call(cpu, __free_pages, m, p, 0)
        pcp = zone.per_cpu_pageset[cpu]
        kept = [p for p in placed[cpu][1] if any(p in lst for lst in pcp.lists)]
        if len(kept) != len(placed[cpu][1]):
            raise r.err(f"cpu[{c.index}].parked",
                        f"CPU {cpu}'s pcplist keeps {len(kept)} of {len(placed[cpu][1])} "
                        f"pages on {kernel} (high {pcp.high}, batch {pcp.batch}): freeing "
                        "the others flushed pages to the buddy")
    for cpu in sorted(cpu_of):
        c = cpu_of[cpu]
        if c.held.by_allocator:
            for _ in range(c.held.count):
                pfn = call(cpu, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, 0)
                if pfn < 0:
                    raise r.err(f"cpu[{c.index}].held", f"CPU {cpu} could not allocate "
                                f"{c.held.count} pages before the run on {kernel}")
                held[cpu].append(hold(m, f"cpu{cpu}", pfn))
    offliners = {cpu for cpu, c in cpu_of.items()
                 if any(isinstance(st, Offline) for st in _walk(c.program))}
    props = spec.properties
    s = TomlState(m, zone, held, [0] * cpus, check_safety=props.isolation_safety,
                  names={c: {} for c in range(cpus)}, contig={c: [] for c in range(cpus)},
                  watched=_watched(spec, m) if props.isolation_safety else (),
                  workers=tuple(c for c in sorted(cpu_of) if c not in offliners)
                  if offliners else (),
                  marks=props.invariants_when_quiet, properties=props)
    s.alloc = alloc_sc.AllocState(m, zone, [0] * cpus)
    return s


#: what the layout's allocations and frees change in a pcp besides its lists (restored,
#: so that the run starts from the pcp state of a booted machine)
_PCP_STATE = ("high", "batch", "high_min", "high_max", "free_count", "alloc_factor", "flags")


def _lay_out(spec: ScenarioSpec, m: Machine, claimed: set[int]) -> None:
    """Allocate every page, set the pageblock types while no page is free (so no free
    list has to move), and free back the pages nobody claims in an order that leaves
    the ``free_first`` blocks at the head of the free lists and the others after them
    lowest first, as after boot (offline.offline_machine frees its second block last
    for the same reason). The pcp limits are pinned to high 0, batch 1 meanwhile, so
    that every free reaches the buddy; the pcp state is restored after."""
    ms = spec.machine
    zone = m.zone("Normal")
    size = 1 << ms.pageblock_order
    saved = [tuple(getattr(pcp, f) for f in _PCP_STATE) for pcp in zone.per_cpu_pageset]
    zsaved = (zone.pageset_high, zone.pageset_batch, zone.pageset_high_min,
              zone.pageset_high_max)
    set_pcp_limits(m, zone, 0, 1)
    got = 0
    for _ in range(zone.managed_pages):
        got += call(0, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, ALLOC_NO_WATERMARKS) >= 0
    if got != zone.managed_pages:
        raise ScenarioFileError(f"{spec.source}: machine: only {got} of "
                                f"{zone.managed_pages} pages could be allocated to lay out "
                                "the initial pages")
    for blk, mt in spec.pageblock_types:
        call(0, set_pageblock_migratetype, m, blk * size, mt)
    blocks = [b for b in reversed(range(ms.pageblocks)) if b not in spec.free_first]
    blocks += list(reversed(spec.free_first))
    for b in blocks:
        for p in range(b * size, (b + 1) * size):
            if p not in claimed and p not in spec.reserved:
                call(0, __free_pages, m, p, 0)
    for pcp, values in zip(zone.per_cpu_pageset, saved, strict=True):
        for f, v in zip(_PCP_STATE, values, strict=True):
            setattr(pcp, f, v)
    (zone.pageset_high, zone.pageset_batch, zone.pageset_high_min,
     zone.pageset_high_max) = zsaved


def _watched(spec: ScenarioSpec, m: Machine) -> tuple[int, ...]:
    """The pageblocks some offline or alloc_contig step isolates."""
    ms = spec.machine
    size = 1 << ms.pageblock_order
    out: set[int] = set()
    for st in (st for c in spec.cpu_specs for st in _walk(c.program)):
        if isinstance(st, Offline):
            first = st.block * ms.section_pages
            out.update(range(first // size, (first + ms.section_pages) // size))
        elif isinstance(st, AllocContig):
            lo = pfn_max_align_down(m, st.start)
            hi = min(pfn_max_align_up(m, st.start + st.pages), ms.zone_pages)
            out.update(range(lo // size, (hi + size - 1) // size))
    return tuple(sorted(out))


def _mark(s: TomlState, cpu: int, on: int) -> Gen:
    if s.marks:
        assert s.alloc is not None
        yield WRITE_ONCE_IDX(s.alloc.busy, cpu, on, "busy")


def _can_run(s: TomlState, cpu: int, st: Step, max_held: int | None) -> bool:
    held = s.held[cpu]
    if isinstance(st, Alloc):
        return max_held is None or len(held) < max_held
    if isinstance(st, Free):
        return bool(held) if st.name is None else st.name in s.names[cpu]
    if isinstance(st, FreeAll | BatchFree):
        return bool(held)
    if isinstance(st, FreeContig):
        return bool(s.contig[cpu])
    return True


def run_cpu(s: TomlState, cpu: int, c: CpuSpec) -> Gen:
    """One CPU's program; a CPU others wait for says so when it has finished."""
    yield from _run(s, cpu, c.program, c.max_held)
    if cpu in s.workers:
        yield WRITE_ONCE_IDX(s.finished, cpu, 1, "finished")


def _run(s: TomlState, cpu: int, steps: Sequence[Step], max_held: int | None) -> Gen:
    for st in steps:
        if isinstance(st, Seq):
            for _ in range(st.repeat):
                yield from _run(s, cpu, st.steps, max_held)
        elif isinstance(st, Choose):
            ok = [o for o in st.options if _can_run(s, cpu, o, max_held)]
            if len(ok) > 1:
                pick = yield choose(len(ok))
                ok = [ok[pick]]
            yield from _run(s, cpu, ok, max_held)
        elif _can_run(s, cpu, st, max_held):
            yield from _one(s, cpu, st)


def _one(s: TomlState, cpu: int, st: Step) -> Gen:
    m = s.m
    held = s.held[cpu]
    if isinstance(st, Drain):
        assert s.alloc is not None
        if s.marks:
            yield from alloc_sc.drain_zone(s.alloc)  # marked as a drain in flight
        else:
            yield from drain_all_pages(m, s.zone)
        return
    yield from _mark(s, cpu, 1)
    if isinstance(st, Alloc):
        yield from _alloc(s, cpu, st)
    elif isinstance(st, Free):
        h = held[0] if st.name is None else s.names[cpu][st.name]
        held.remove(h)
        _forget(s, cpu, h)
        yield from unmap_and_put(m, h)
    elif isinstance(st, FreeAll):
        while held:
            h = held.pop(0)
            _forget(s, cpu, h)
            yield from unmap_and_put(m, h)
    elif isinstance(st, BatchFree):
        pages = list(held)
        held.clear()
        s.names[cpu].clear()
        pfns = yield from offline_sc.release_pages(m, pages)
        yield from free_unref_page_list(m, pfns)
    elif isinstance(st, Offline):
        yield from _offline(s, cpu, st)
    elif isinstance(st, Online):
        yield from online_memory_block(m, st.block, st.online_type)
    elif isinstance(st, AllocContig):
        if not (yield from alloc_contig_range(m, st.start, st.start + st.pages)):
            s.contig[cpu].append((st.start, st.pages))
    elif isinstance(st, FreeContig):
        start, nr = s.contig[cpu].pop(0)
        yield from free_contig_range(m, start, nr)
    yield from _mark(s, cpu, 0)


def _forget(s: TomlState, cpu: int, h: HeldPage) -> None:
    names = s.names[cpu]
    for k in [k for k, v in names.items() if v is h]:
        del names[k]


def _alloc(s: TomlState, cpu: int, st: Alloc) -> Gen:
    """alloc_pages() with the isolation check of offline.worker_alloc, for any order and
    type and every pageblock some step isolates: read each block's bits before; if the
    block was isolated then and holds the page, read them again after; isolated both
    times is a page taken from a list while its block was isolated (spec §7)."""
    m = s.m
    before = []
    for blk in s.watched:
        before.append((yield READ_ONCE_IDX(m.pageblock_flags, blk, "pageblock")))
    pfn = yield from alloc_pages(m, st.order, st.migratetype, 2, 0)
    if pfn < 0:
        return
    h = hold(m, f"cpu{cpu}", pfn)
    s.held[cpu].append(h)
    if st.name:
        s.names[cpu][st.name] = h
    size = 1 << m.pageblock_order
    for blk, bits in zip(s.watched, before, strict=True):
        if offline_sc._isolated(m, bits) and pfn < (blk + 1) * size \
                and pfn + (1 << st.order) > blk * size:
            after = yield READ_ONCE_IDX(m.pageblock_flags, blk, "pageblock")
            assert not offline_sc._isolated(m, after), (
                f"cpu{cpu} allocated pfn {pfn} of pageblock {blk}, which was isolated "
                "from before the allocation began until after it returned")


def _offline(s: TomlState, cpu: int, st: Offline) -> Gen:
    m = s.m
    blk = memory_block(m, st.block)
    if not block_is_online(m, blk):
        return
    hook = WaitForOthers(s, cpu)
    yield from offline_pages(m, blk.start_pfn, blk.nr_pages, st.retries, hook)
    # offline_pages logged its call in the step that returned, which is this one
    s.offlines.append((cpu, hotplug_state(m).log[-1], hook))


# =======================================================================================
# Properties (named as in the file: the checker reports a check by its name)


def invariants_when_quiet(s: TomlState) -> str | None:
    """The allocator scenarios' check: the model's invariants whenever no CPU is inside
    a step and no drain is in flight."""
    assert s.alloc is not None
    return alloc_sc.invariants_when_quiet(s.alloc)


def offline_terminates(s: TomlState) -> str | None:
    """The built-in rule (offline.offline_terminates) for every offline call: giving up
    at the bound while others ran says nothing; failing the extra rounds alone, or
    failing for any other reason, is a violation."""
    for cpu, event, hook in s.offlines:
        if event.ret == 0:
            continue
        if event.reason == RETRY_BOUND:
            if not hook.alone:
                continue
            start = event.start_pfn
            where = [(p, offline_sc._where(s.m, p))
                     for p in range(start, start + event.nr_pages)]
            busy = [f"pfn {p} {w}" for p, w in where if w != "free in the buddy"]
            return (f"offline_pages never finishes: {event.retries} failed rounds, the "
                    f"last {offline_sc.EXTRA_RETRIES} after every other CPU had stopped; "
                    f"{', '.join(busy) or 'no page busy'}")
        return f"cpu{cpu}: offline_pages returned {event.ret} ({event.reason})"
    return None


def nothing_lost(s: TomlState) -> str | None:
    """The tasks exit: what they still hold is freed (contiguous ranges too); then the
    built-in check: every CPU drained, every page free and merged, or offline."""
    m = s.m
    for cpu, held in s.held.items():
        while held:
            call(cpu, unmap_and_put, m, held.pop(0))
    for cpu, ranges in s.contig.items():
        while ranges:
            start, n = ranges.pop(0)
            call(cpu, free_contig_range, m, start, n)
    return offline_sc.nothing_lost(s)


def _observed(s: TomlState) -> Iterable[Any]:
    assert s.alloc is not None
    return alloc_sc.observed(s.alloc)


def _snapshot(s: TomlState) -> Mapping[str, object]:
    assert s.alloc is not None
    return alloc_sc.state_snapshot(s.alloc)
