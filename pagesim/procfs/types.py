# SPDX-License-Identifier: GPL-2.0-only
"""Plain data read from, or written to, /proc files.

These records know nothing of the model: the parsers fill them from text, the renderers
turn them back into text byte for byte, and :mod:`pagesim.procfs.machine` converts
between them and a model machine. Keeping them separate lets a parsed file be printed
back unchanged (the golden tests) and lets the model stay free of text formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ProcFormatError(ValueError):
    """A /proc file that is malformed or truncated; the message names file, line, problem."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass
class PagesetInfo:
    """One ``cpu: N`` block of a zone's ``pagesets`` section."""

    cpu: int
    count: int
    high: int
    batch: int
    high_min: int | None = None  # printed since 6.13 (tuning itself is 6.7)
    high_max: int | None = None
    vm_stats_threshold: int | None = None  # absent on !SMP


@dataclass
class ZoneInfo:
    """One ``Node N, zone NAME`` section of /proc/zoneinfo."""

    node: int
    name: str
    #: ``per-node stats`` lines (name, value) in file order; only on the node's first zone.
    per_node_stats: list[tuple[str, int]] | None
    free: int  # "pages free"
    min: int
    low: int
    high: int
    spanned: int
    present: int
    managed: int
    protection: list[int]
    boost: int | None = None  # printed since 5.16/5.17 (see procfs.layout)
    promo: int | None = None  # printed since 6.12 (memory tiering)
    cma: int | None = None  # printed since 5.12 (0 without CONFIG_CMA)
    #: zone vm stats (name, value) in file order; empty for an unpopulated zone
    stats: list[tuple[str, int]] = field(default_factory=list)
    pagesets: list[PagesetInfo] = field(default_factory=list)
    node_unreclaimable: int | None = None
    start_pfn: int | None = None
    reserved_highatomic: int | None = None  # 6.19+ trailer
    free_highatomic: int | None = None  # 6.19+ trailer
    #: False for a zone printed without its stats block (an unpopulated zone)
    populated: bool = True

    def stat(self, name: str) -> int | None:
        for key, value in self.stats:
            if key == name:
                return value
        return None


@dataclass
class Zoneinfo:
    """A whole /proc/zoneinfo."""

    zones: list[ZoneInfo]


@dataclass
class BuddyinfoZone:
    node: int
    name: str
    nr_free: list[int]  # free blocks per order, all migratetypes


@dataclass
class Buddyinfo:
    zones: list[BuddyinfoZone]


@dataclass
class PagetypeinfoZone:
    node: int
    name: str
    #: migratetype name -> free blocks per order (a count printed as ">100000" is stored
    #: as 100001 and flagged in ``capped``)
    free: dict[str, list[int]]
    #: migratetype name -> number of pageblocks of that type
    blocks: dict[str, int]
    capped: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class Pagetypeinfo:
    pageblock_order: int
    pages_per_block: int
    nr_orders: int
    #: migratetype names in the order the file lists them (with or without CMA)
    migratetypes: list[str]
    zones: list[PagetypeinfoZone]
