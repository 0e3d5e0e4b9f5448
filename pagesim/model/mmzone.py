# SPDX-License-Identifier: GPL-2.0-only
"""The allocator's state: struct page facts, zones, free areas, pageblocks, pagesets.

Modelled on include/linux/mmzone.h and include/linux/mm_types.h. A machine of 16 Mi
pages must fit in a few hundred MiB, so struct page is not an object: each fact the
allocator uses is one compact array indexed by pfn (``flags``, ``private`` for the buddy
order, ``index`` for the 5.x cached migratetype, ``refcount``, ``zone_id``), and the
``lru`` links are two int32 arrays, which also hold the free-list heads. That keeps the
kernel's intrusive doubly linked lists (O(1) unlink of a buddy from the middle of a
list) at 16 bytes a page.

pcplists are deques of pfns: the kernel only ever adds at the head, takes from the head
(allocation) or the tail (bulk free), never from the middle, and a deque does exactly
that an order of magnitude faster than the linked arrays.

Nothing here interleaves: these are the data and the list primitives that the
functions in :mod:`pagesim.model.page_alloc` call while holding the lock that protects
them (``zone->lock`` for the free areas; interrupts off or ``pcp->lock`` for pcplists).
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pagesim.model.geometry import PAGE_ALLOC_COSTLY_ORDER, Geometry
from pagesim.runtime.kernelfn import inline
from pagesim.runtime.ops import Mutex, SpinLock

if TYPE_CHECKING:
    from pagesim.model.kernels import Kernel
    from pagesim.model.memory_hotplug import MemoryHotplug

# ---------------------------------------------------------------------------------------
# Migratetypes (include/linux/mmzone.h, enum migratetype). The model always numbers CMA
# 4 and ISOLATE 5; a kernel without CONFIG_CMA numbers ISOLATE 4, which the /proc and
# trace printers translate with kernel_migratetype_number().
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES
MIGRATE_CMA = 4
MIGRATE_ISOLATE = 5
MIGRATE_TYPES = 6

MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

#: mm/page_alloc.c fallbacks[]: where each pcp type looks when its own lists are empty.
FALLBACKS: tuple[tuple[int, ...], ...] = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)


def migratetypes(geom: Geometry) -> tuple[int, ...]:
    """The migratetypes a kernel with this configuration has, in enum order."""
    if geom.cma:
        return (0, 1, 2, 3, 4, 5)
    return (0, 1, 2, 3, 5)


def kernel_migratetype_number(mt: int, geom: Geometry) -> int:
    """The number the kernel prints for ``mt`` (ISOLATE is 4 without CONFIG_CMA)."""
    if mt == MIGRATE_ISOLATE and not geom.cma:
        return 4
    return mt


# ---------------------------------------------------------------------------------------
# Zones (enum zone_type). ZONE_DEVICE exists in configs with it; it is never populated.
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE = range(5)
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
NO_ZONE = 255

# ---------------------------------------------------------------------------------------
# struct page flags, one byte per pfn. PG_buddy and PG_reserved are the kernel's;
# PG_pcp records "on a pcplist" (the kernel knows it only from the list the page is on);
# PG_lru marks an allocated page as migratable (on the LRU or __PageMovable); PG_hole
# marks a pfn with no present memory; PG_offline a page whose section was offlined.
PG_buddy = 0x01
PG_reserved = 0x02
PG_pcp = 0x04
PG_lru = 0x08
PG_hole = 0x10
PG_offline = 0x20
#: held by a task between two places: freed but not yet on a list, taken off a list but
#: not yet handed out (the order is kept in ``private``). Not a kernel flag: it lets the
#: invariants account for pages a CPU holds in a local variable mid-operation.
PG_transit = 0x40

# Pageblock flags (include/linux/pageblock-flags.h): 3 migratetype bits; since 6.17 a
# separate isolate bit (the 5.x kernels write MIGRATE_ISOLATE into the 3 bits instead).
PB_migratetype_mask = 0x07
PB_migrate_isolate = 0x10

# __free_one_page flags (mm/internal.h, fpi_t)
FPI_NONE = 0
FPI_TO_TAIL = 0x2

# alloc_flags (mm/internal.h)
ALLOC_WMARK_MIN = 0x00
ALLOC_WMARK_LOW = 0x01
ALLOC_WMARK_HIGH = 0x02
ALLOC_NO_WATERMARKS = 0x04
ALLOC_HARDER = 0x10
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100


class PerCpuPages:
    """struct per_cpu_pages: one CPU's cache of free pages for one zone.

    ``count`` is in pages. ``high``/``batch`` are read locklessly by the owner while
    another CPU may rewrite them (``pageset_update``); ``count`` is read remotely by
    ``drain_all_pages``. ``lock`` exists from 6.0 on; ``high_min``/``high_max``,
    ``free_count`` and ``alloc_factor`` from 6.7 on (``free_factor`` in 5.14-6.6 is kept
    in ``free_count``).
    """

    __slots__ = ("alloc_factor", "batch", "count", "cpu", "flags", "free_count", "high",
                 "high_max", "high_min", "lists", "lock", "name")

    def __init__(self, name: str, cpu: int, nr_lists: int, high: int, batch: int) -> None:
        self.name = name
        self.cpu = cpu
        self.count = 0
        self.high = high
        self.batch = batch
        self.high_min = high
        self.high_max = high
        self.free_count = 0
        self.alloc_factor = 0
        self.flags = 0
        self.lists: list[deque[int]] = [deque() for _ in range(nr_lists)]
        self.lock = SpinLock(f"{name}.lock")

    def __repr__(self) -> str:
        return f"<{self.name} count={self.count} high={self.high} batch={self.batch}>"


@dataclass
class ZoneLayout:
    """Where a zone lies: its span, and which pfns inside it have no memory."""

    name: str
    start_pfn: int
    spanned: int
    #: [start, end) pfn ranges inside the span without present memory
    holes: tuple[tuple[int, int], ...] = ()
    #: [start, end) ranges of present pages that are reserved (not managed by the buddy)
    reserved: tuple[tuple[int, int], ...] = ()

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned

    @property
    def present(self) -> int:
        return self.spanned - sum(e - s for s, e in self.holes)


class Zone:
    """struct zone (the fields the allocator, isolation and offline use)."""

    __slots__ = ("_watermark", "boot_pageset", "flags", "free_list_base", "idx", "lock",
                 "lowmem_reserve", "managed_pages", "name", "nr_free", "nr_free_cma",
                 "nr_free_pages", "nr_isolate_pageblock", "nr_reserved_highatomic",
                 "pageset_batch", "pageset_high", "pageset_high_max", "pageset_high_min",
                 "pcp_disabled", "per_cpu_pageset", "present_pages", "spanned_pages",
                 "watermark_boost", "zone_start_pfn")

    def __init__(self, idx: int, name: str, free_list_base: int, nr_orders: int) -> None:
        self.idx = idx
        self.name = name
        self.zone_start_pfn = 0
        self.spanned_pages = 0
        self.present_pages = 0
        self.managed_pages = 0
        self._watermark = [0, 0, 0, 0]  # WMARK_MIN, LOW, HIGH, PROMO
        self.watermark_boost = 0
        self.lowmem_reserve: list[int] = []
        self.nr_free = [0] * nr_orders  # free_area[order].nr_free (blocks, all types)
        self.free_list_base = free_list_base  # index of free_list[order 0][type 0] head
        self.nr_free_pages = 0  # NR_FREE_PAGES: excludes isolated free pages
        self.nr_free_cma = 0  # NR_FREE_CMA_PAGES
        self.nr_isolate_pageblock = 0
        self.nr_reserved_highatomic = 0
        self.flags = 0
        self.lock = SpinLock(f"zone[{name}].lock")
        self.per_cpu_pageset: list[PerCpuPages] = []
        self.boot_pageset = True  # points at the boot pagesets until setup_zone_pageset
        # the computed pcp parameters cached per zone (5.11+; 6.7+ adds min/max)
        self.pageset_high = 0
        self.pageset_batch = 1
        self.pageset_high_min = 0
        self.pageset_high_max = 0
        #: model-only marker, not a kernel field: true from the return of
        #: zone_pcp_disable() to the start of zone_pcp_enable(), the interval over which
        #: spec §7 requires every pcplist of the zone to be empty outside pcp sections
        #: (the kernel's state is just the held pcp_batch_high_lock and the zero limits)
        self.pcp_disabled = False

    @property
    def zone_end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def populated(self) -> bool:
        return self.present_pages > 0

    def min_wmark_pages(self) -> int:
        return self._watermark[0] + self.watermark_boost

    def low_wmark_pages(self) -> int:
        return self._watermark[1] + self.watermark_boost

    def high_wmark_pages(self) -> int:
        return self._watermark[2] + self.watermark_boost

    def __repr__(self) -> str:
        return f"<zone {self.name} {self.zone_start_pfn:#x}+{self.spanned_pages}>"


class Machine:
    """One NUMA node: its CPUs, zones, memmap and pageblock bits, plus global locks.

    The kernel generation is part of the machine because it decides the shape of the
    state (how many pcplists, whether isolation is a separate bit).
    """

    def __init__(self, kernel: Kernel, geom: Geometry, nr_cpus: int, end_pfn: int,
                 zone_names: tuple[str, ...] = ZONE_NAMES) -> None:
        if nr_cpus < 1:
            raise ValueError(f"nr_cpus {nr_cpus}: a machine needs at least one CPU")
        if end_pfn < 1:
            raise ValueError(f"end_pfn {end_pfn}: a machine needs memory")
        self.kernel = kernel
        self.geom = geom
        self.nr_cpus = nr_cpus
        self.end_pfn = end_pfn
        self.nr_pcp_lists = nr_pcp_lists(kernel, geom)
        self.pageblock_order = geom.pageblock_order
        # lookup tables for the hot paths (built from the functions at the end of
        # this module, which say what they mean)
        self.pcp_allowed = tuple(pcp_allowed_order(kernel, geom, o)
                                 for o in range(geom.nr_orders))
        self.pindex_table = tuple(
            order_to_pindex(kernel, geom, mt, o) if self.pcp_allowed[o] else -1
            for o in range(geom.nr_orders) for mt in range(MIGRATE_TYPES))
        self.pb_type = tuple(_pb_type(kernel, bits) for bits in range(256))
        nr_orders = geom.nr_orders
        n_heads = len(zone_names) * nr_orders * MIGRATE_TYPES
        # struct page, one array per field (see module docstring)
        self.flags = bytearray(end_pfn)
        self.private = bytearray(end_pfn)  # buddy order / order of a pcp page
        self.index = bytearray(end_pfn)  # 5.x: migratetype cached by the pcp paths
        self.refcount = array("i", bytes(4 * end_pfn))
        self.zone_id = bytearray(b"\xff") * end_pfn
        # lru links; indices >= end_pfn are free-list heads (circular, empty = self-loop).
        # A page's links mean something only while it is on a list, so they start at 0.
        self.lru_next = array("i", bytes(4 * end_pfn))
        self.lru_next.extend(range(end_pfn, end_pfn + n_heads))
        self.lru_prev = array("i", self.lru_next)
        nblocks = (end_pfn + geom.pageblock_nr_pages - 1) >> geom.pageblock_order
        self.pageblock_flags = bytearray([MIGRATE_MOVABLE]) * nblocks
        self.zones = [Zone(i, name, end_pfn + i * nr_orders * MIGRATE_TYPES, nr_orders)
                      for i, name in enumerate(zone_names)]
        # the static per-CPU boot pagesets (high 0, batch 1): every pcplist addition
        # is flushed at once (mm/page_alloc.c BOOT_PAGESET_HIGH/BATCH)
        self.boot_pagesets = [PerCpuPages(f"boot_pageset[cpu{c}]", c, self.nr_pcp_lists, 0, 1)
                              for c in range(nr_cpus)]
        for z in self.zones:
            z.per_cpu_pageset = self.boot_pagesets
        # global locks (mm/page_alloc.c)
        self.pcp_batch_high_lock = Mutex("pcp_batch_high_lock")
        self.pcpu_drain_mutex = Mutex("pcpu_drain_mutex")
        # sysctls
        self.percpu_pagelist_fraction = 0  # vm.percpu_pagelist_(high_)fraction
        self.min_free_kbytes = 0
        self.watermark_scale_factor = 10
        #: trace sink: called as tracer(event, fields) when not None; the CPU is the
        #: runtime's current one (pagesim.trace.Tracer collects and timestamps them)
        self.tracer: Tracer | None = None
        #: pass-through values for /proc output that the model does not compute
        self.extra: dict[str, object] = {}
        #: blocks that scenario tasks hold, by head pfn: migration (mm/migrate.c in
        #: pagesim.model.migrate) moves an entry to the new page, as the kernel moves
        #: the owner's mapping, so a holder finds its page after offline or compaction
        self.owners: dict[int, HeldPage] = {}
        #: the page table lock of the address space the scenarios' tasks share: it
        #: orders a task mapping or unmapping a page against migration moving its
        #: mapping (remove_migration_ptes), as the kernel's PTE lock does
        self.ptl = SpinLock("ptl")
        #: memory blocks and mem_hotplug_lock (pagesim.model.memory_hotplug); created
        #: on first use
        self.hotplug: MemoryHotplug | None = None

    # -- struct page helpers -----------------------------------------------------------
    def page_zone(self, pfn: int) -> Zone:
        return page_zone(self, pfn)

    def pageblock_index(self, pfn: int) -> int:
        return pfn >> self.geom.pageblock_order

    def free_list_head(self, zone: Zone, order: int, mt: int) -> int:
        return zone.free_list_base + order * MIGRATE_TYPES + mt

    def populated_zones(self) -> list[Zone]:
        return [z for z in self.zones if z.present_pages]

    def zone(self, name: str) -> Zone:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(f"no zone {name!r} (zones: {', '.join(z.name for z in self.zones)})")


class HeldPage:
    """A reference a scenario's task holds on an allocated block (its mapping of it).

    The model's pages have no contents, so "migrating" a page means that its holder now
    holds the target: :func:`pagesim.model.migrate.unmap_and_move` rewrites ``pfn`` and
    re-keys :attr:`Machine.owners` in the same step that drops the source. A task frees
    its block with ``__free_pages(m, held.pfn, held.order)`` evaluated in one step, so
    it always frees the page it holds now.
    """

    __slots__ = ("name", "order", "pfn")

    def __init__(self, name: str, pfn: int, order: int) -> None:
        self.name = name
        self.pfn = pfn
        self.order = order

    def __repr__(self) -> str:
        return f"<held {self.name}: pfn {self.pfn:#x} order {self.order}>"


class Tracer(Protocol):
    """A trace sink: receives each tracepoint the model hits (kmem events)."""

    def __call__(self, event: str, fields: dict[str, int]) -> None: ...


def nr_pcp_lists(kernel: Kernel, geom: Geometry) -> int:
    """NR_PCP_LISTS: 3 order-0 lists in 5.x; since 5.13 one per (type, order <= 3) plus
    two for the THP order (movable, and unmovable+reclaimable)."""
    if not kernel.pcp_high_order_lists:
        return MIGRATE_PCPTYPES
    low = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
    return low + (2 if geom.thp_order else 0)


def pcp_allowed_order(kernel: Kernel, geom: Geometry, order: int) -> bool:
    """Which orders a pcplist may hold (mm/page_alloc.c pcp_allowed_order)."""
    if not kernel.pcp_high_order_lists:
        return order == 0
    if order <= PAGE_ALLOC_COSTLY_ORDER:
        return True
    return bool(geom.thp_order) and order == geom.thp_order


def order_to_pindex(kernel: Kernel, geom: Geometry, mt: int, order: int) -> int:
    """The pcplist index of (migratetype, order) (mm/page_alloc.c order_to_pindex)."""
    if not kernel.pcp_high_order_lists:
        return mt
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1) + (mt == MIGRATE_MOVABLE)
    return MIGRATE_PCPTYPES * order + mt


def pindex_to_order(kernel: Kernel, geom: Geometry, pindex: int) -> int:
    if not kernel.pcp_high_order_lists:
        return 0
    if pindex >= MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1):
        return geom.thp_order
    return pindex // MIGRATE_PCPTYPES


def _pb_type(kernel: Kernel, bits: int) -> int:
    """The migratetype a pageblock's bits say: since 6.17 the isolate bit wins over the
    3-bit type (get_pfnblock_migratetype in [K619])."""
    if kernel.isolate_bit and bits & PB_migrate_isolate:
        return MIGRATE_ISOLATE
    return bits & PB_migratetype_mask


@inline
def page_zone(m: Machine, pfn: int) -> Zone:
    """page_zone(): the zone recorded in the page (here in ``zone_id``)."""
    return m.zones[m.zone_id[pfn]]


@inline
def high_wmark_pages(zone: Zone) -> int:
    """high_wmark_pages(z) (include/linux/mmzone.h), as a helper the sequential variant
    inlines: the hot paths of 6.7+ test it on every pcp free and refill."""
    return zone._watermark[2] + zone.watermark_boost


@inline
def pcp_allowed(m: Machine, order: int) -> bool:
    """pcp_allowed_order() for the machine's generation, from its table."""
    return m.pcp_allowed[order]


@inline
def pcp_pindex(m: Machine, mt: int, order: int) -> int:
    """order_to_pindex() for the machine's generation, from its table."""
    return m.pindex_table[order * MIGRATE_TYPES + mt]
