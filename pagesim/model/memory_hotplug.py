# SPDX-License-Identifier: GPL-2.0-only
"""Memory hotplug: memory blocks, offline_pages() and online_pages() (mm/memory_hotplug.c,
drivers/base/memory.c, and the helpers of mm/page_alloc.c that only offline uses).

offline_pages() is the isolation user the 2020 fix is about. Its generations, as
features of ``m.kernel`` (spec §3.6, §4.6, §9):

* v5.8: isolate (each block's isolation drains the zone's pcplists once, non-forced),
  then loop "migrate, test" with no drain on retry: a page parked on a pcplist keeps
  test_pages_isolated() failing until a signal arrives;
* v5.9-5.10 (``offline_drain_on_retry``): drain_all_pages() after every failed test;
* v5.11+ (``zone_pcp_disable``): zone_pcp_disable() before isolating, zone_pcp_enable()
  on every way out, before anything that calls zone_pcp_update() (which needs the
  pcp_batch_high_lock that disable keeps); no drain on retry, no drain in isolation;
* v5.14+ (``lru_cache_disable``): lru_cache_disable()/enable() bracket isolation instead
  of lru_add_drain_all() in each scan round; both are no-ops here (no LRU pagevecs);
  and (``zone_highsize``) the pcp limits are recomputed through
  init_per_zone_wmark_min() -> setup_per_zone_wmarks() -> zone_pcp_update() of every
  zone, where 5.x called zone_pcp_update(zone) itself.

``mem_hotplug_lock`` (mem_hotplug_begin/done) is taken inside offline_pages() and
online_pages(), as in 5.x-6.0; 6.x takes it in the memory-block callers instead, around
the same calls, which makes no difference to anything the model observes.

Model-only: a retry bound. offline_pages(..., max_retries=N) gives up with -EBUSY after
N rounds without progress (failed test_pages_isolated() or failed migrations), logged
with the reason :data:`RETRY_BOUND` rather than a kernel one, so a checker can tell
"would have looped" from a real failure. A pending signal is ``signal_pending`` of the
machine's :class:`MemoryHotplug`, read once per scan round as the kernel does.

Simplifications (each argued where it is made): no memory notifiers, hugetlb, node
states or zonelists; the sections of a range being onlined are marked online when its
pageblocks are counted as isolated, not after its pages were freed; alignment is to whole
sections in every generation (6.x accepts a pageblock-aligned start only for
memmap_on_memory, which the model does not have).
"""

from __future__ import annotations

from array import array
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from pagesim.model import build
from pagesim.model.migrate import do_migrate_range, scan_movable_pages, vm_events
from pagesim.model.mmzone import (
    FPI_TO_TAIL,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    Machine,
    PB_migrate_isolate,
    PG_buddy,
    PG_hole,
    PG_offline,
    PG_reserved,
    Zone,
    page_zone,
)
from pagesim.model.page_alloc import (
    BadPage,
    __free_pages_ok,
    del_page_from_free_list,
    drain_all_pages,
    get_pageblock_migratetype,
)
from pagesim.model.page_isolation import (
    EBUSY,
    EINTR,
    EINVAL,
    MEMORY_OFFLINE,
    REPORT_FAILURE,
    pfn_to_online_page,
    start_isolate_page_range,
    test_pages_isolated,
    undo_isolate_page_range,
)
from pagesim.model.pageset import (
    setup_zone_pageset,
    zone_pcp_disable,
    zone_pcp_enable,
    zone_pcp_reset,
    zone_pcp_update,
)
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    READ_ONCE,
    ModelError,
    Mutex,
    local_irq_restore,
    local_irq_save,
    mutex_lock,
    mutex_unlock,
    point,
    spin_lock,
    spin_unlock,
)

Gen = Generator[Any, Any, Any]

#: the reason logged when offline_pages() gives up at its model-only retry bound
RETRY_BOUND = "retry bound (model)"

#: arch/x86/mm/init_64.c: boot memory below this gets the smallest memory blocks
MEM_SIZE_FOR_LARGE_BLOCK = 64 << 30
#: arch/x86/mm/init_64.c MAX_BLOCK_SIZE: bare metal with more memory gets 2 GiB blocks
MAX_BLOCK_SIZE = 2 << 30

ONLINE_TYPES = ("online", "online_kernel", "online_movable")


# =======================================================================================
# Memory blocks (drivers/base/memory.c)


@dataclass(frozen=True)
class MemoryBlock:
    """/sys/devices/system/memory/memoryN: ``sections_per_block`` sections from
    ``start_pfn``. Its state and zone are read from the pages, so they cannot drift."""

    id: int
    start_pfn: int
    nr_pages: int

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages


@dataclass
class HotplugEvent:
    """One on/offline call: its result and, on failure, the reason the kernel prints
    with pr_debug (or :data:`RETRY_BOUND`); ``retries`` counts offline rounds without
    progress."""

    op: str
    start_pfn: int
    nr_pages: int
    ret: int
    reason: str = ""
    retries: int = 0


@dataclass
class MemoryHotplug:
    """A machine's memory-hotplug state: block geometry, ``mem_hotplug_lock``, the
    pending-signal flag of the task that on/offlines, and a log of calls."""

    sections_per_block: int
    lock: Mutex = field(default_factory=lambda: Mutex("mem_hotplug_lock"))
    #: signal_pending(current) of the offlining task (set it to make offline back off)
    signal_pending: bool = False
    log: list[HotplugEvent] = field(default_factory=list)
    #: the name the runtime's ops print
    name: str = "memory_hotplug"


def probe_memory_block_size(m: Machine, bare_metal: bool = True) -> int:
    """Sections per memory block as x86-64 chooses them (spec §5.5; [K510]
    arch/x86/mm/init_64.c probe_memory_block_size): one section below 64 GiB of boot
    memory; above, 2 GiB on bare metal, or under a hypervisor the largest power of two
    from 2 GiB down to a section that divides the end of boot memory."""
    geom = m.geom
    section_bytes = geom.pages_per_section << geom.page_shift
    end_bytes = m.end_pfn << geom.page_shift
    if end_bytes < MEM_SIZE_FOR_LARGE_BLOCK:
        return 1
    size = max(MAX_BLOCK_SIZE, section_bytes)
    if not bare_metal:
        while size > section_bytes and end_bytes % size:
            size >>= 1
    return max(1, size // section_bytes)


def hotplug_state(m: Machine, sections_per_block: int | None = None) -> MemoryHotplug:
    """The machine's hotplug state, created on first use with the probed block size (or
    ``sections_per_block``, which must then agree with an existing state)."""
    hp = m.hotplug
    if hp is None:
        spb = sections_per_block or probe_memory_block_size(m)
        if spb < 1:
            raise ValueError(f"sections_per_block {spb}: must be at least 1")
        hp = m.hotplug = MemoryHotplug(spb)
    elif sections_per_block is not None and sections_per_block != hp.sections_per_block:
        raise ValueError(f"memory blocks are already {hp.sections_per_block} sections")
    return hp


def memory_blocks(m: Machine) -> list[MemoryBlock]:
    """Every memory block with present memory (a section of holes only has none)."""
    hp = hotplug_state(m)
    size = hp.sections_per_block * m.geom.pages_per_section
    out = []
    for i, start in enumerate(range(0, m.end_pfn, size)):
        end = min(start + size, m.end_pfn)
        if m.flags[start:end].count(PG_hole) != end - start:
            out.append(MemoryBlock(i, start, end - start))
    return out


def memory_block(m: Machine, block_id: int) -> MemoryBlock:
    for blk in memory_blocks(m):
        if blk.id == block_id:
            return blk
    raise KeyError(f"no memory block {block_id}")


def block_is_online(m: Machine, blk: MemoryBlock) -> bool:
    seg = m.flags[blk.start_pfn:blk.end_pfn]
    return any(not f & (PG_hole | PG_offline) for f in seg)


def block_zone(m: Machine, blk: MemoryBlock) -> Zone | None:
    """The zone of an online block, None if offline or spread over several zones."""
    if not block_is_online(m, blk):
        return None
    return test_pages_in_a_zone(m, blk.start_pfn, blk.end_pfn)


def block_state(m: Machine, blk: MemoryBlock) -> str:
    """"offline", "online", or "online_movable" (online in ZONE_MOVABLE). sysfs itself
    says only online/offline; the zone shows in valid_zones."""
    if not block_is_online(m, blk):
        return "offline"
    zone = block_zone(m, blk)
    return "online_movable" if zone is not None and zone.name == "Movable" else "online"


def zone_intersects(zone: Zone, start_pfn: int, nr_pages: int) -> bool:
    """[K510] include/linux/mmzone.h:644-654."""
    if not zone.spanned_pages:
        return False
    return start_pfn < zone.zone_end_pfn and start_pfn + nr_pages > zone.zone_start_pfn


def _kernel_zones(m: Machine) -> list[Zone]:
    names = [z.name for z in m.zones]
    last = names.index("Normal") if "Normal" in names else len(names) - 1
    return m.zones[:last + 1]


def default_kernel_zone_for_pfn(m: Machine, start_pfn: int, nr_pages: int) -> Zone:
    """The first kernel zone (up to ZONE_NORMAL) the range intersects, else Normal
    ([K510] mm/memory_hotplug.c :728-742)."""
    kernel_zones = _kernel_zones(m)
    for zone in kernel_zones:
        if zone_intersects(zone, start_pfn, nr_pages):
            return zone
    return kernel_zones[-1]


def zone_for_pfn_range(m: Machine, online_type: str, start_pfn: int,
                       nr_pages: int) -> Zone:
    """Where onlining puts a range ([K510] :744-778): online_kernel -> the default
    kernel zone; online_movable -> Movable; online -> whichever of the two the range
    already intersects, the kernel zone if both or neither (movable_node is off)."""
    if online_type not in ONLINE_TYPES:
        raise ValueError(f"online type {online_type!r}: one of {', '.join(ONLINE_TYPES)}")
    kernel_zone = default_kernel_zone_for_pfn(m, start_pfn, nr_pages)
    if online_type == "online_kernel":
        return kernel_zone
    movable = m.zone("Movable")
    if online_type == "online_movable":
        return movable
    in_kernel = zone_intersects(kernel_zone, start_pfn, nr_pages)
    in_movable = zone_intersects(movable, start_pfn, nr_pages)
    if in_kernel != in_movable:
        return kernel_zone if in_kernel else movable
    return kernel_zone


def valid_zones(m: Machine, blk: MemoryBlock) -> list[str]:
    """/sys/.../memoryN/valid_zones ([K510] drivers/base/memory.c :310-361): an online
    block's zone ("none" if it spans two), or for an offline block the default zone
    followed by the other zones it could be onlined to."""
    if block_is_online(m, blk):
        zone = block_zone(m, blk)
        return [zone.name if zone is not None else "none"]
    default = zone_for_pfn_range(m, "online", blk.start_pfn, blk.nr_pages)
    out = [default.name]
    for online_type in ("online_kernel", "online_movable"):
        zone = zone_for_pfn_range(m, online_type, blk.start_pfn, blk.nr_pages)
        if zone is not default:
            out.append(zone.name)
    return out


@kernel
def offline_memory_block(m: Machine, block_id: int, max_retries: int | None = None) -> Gen:
    """Write "offline" to a block's state: 0 if it already is; -EINVAL if its pages are
    in several zones (6.x memory_block_offline: no mem->zone); else offline_pages().
    The sysfs path state_store -> memory_subsys_offline -> memory_block_change_state ->
    memory_block_action ([K510] drivers/base/memory.c:253-290, 243-251, 202-219,
    176-200; [K619] drivers/base/memory.c:395-432, 385-393, 346-361, 325-344, and
    memory_block_offline at 280-319)."""
    blk = memory_block(m, block_id)
    if not block_is_online(m, blk):
        return 0
    if block_zone(m, blk) is None:
        return -EINVAL
    return (yield from offline_pages(m, blk.start_pfn, blk.nr_pages, max_retries))


@kernel
def online_memory_block(m: Machine, block_id: int, online_type: str = "online") -> Gen:
    """Write "online", "online_kernel" or "online_movable" to an offline block's state
    (0 if it is online already): state_store -> memory_subsys_online ->
    memory_block_change_state -> memory_block_action ([K510] drivers/base/memory.c:
    253-290, 222-241, 202-219, 176-200; [K619] :395-432, 364-383, 346-361, 325-344,
    and memory_block_online at 224-275)."""
    blk = memory_block(m, block_id)
    if block_is_online(m, blk):
        yield point("online_memory_block: already online")
        return 0
    zone = zone_for_pfn_range(m, online_type, blk.start_pfn, blk.nr_pages)
    return (yield from online_pages(m, blk.start_pfn, blk.nr_pages, zone))


# =======================================================================================
# Helpers of offline and online


@kernel
def lru_add_drain_all(m: Machine) -> Gen:
    """5.x, every scan round of offline: flush every CPU's LRU pagevecs ([K510]
    mm/swap.c:762-854). The model has none, so this is only a scheduling point."""
    yield point("lru_add_drain_all")


@kernel
def lru_cache_disable(m: Machine) -> Gen:
    """5.14+: stop LRU pagevec caching while offline runs ([K619] mm/swap.c:912-934; a
    no-op here, see lru_add_drain_all)."""
    yield point("lru_cache_disable")


@kernel
def lru_cache_enable(m: Machine) -> Gen:
    """The pair of lru_cache_disable ([K619] include/linux/swap.h:358): a scheduling
    point only."""
    yield point("lru_cache_enable")


def test_pages_in_a_zone(m: Machine, start_pfn: int, end_pfn: int) -> Zone | None:
    """The one zone all present pages of the range belong to, or None ([K510]
    :1189-1222; 6.x checks the first and last page against the caller's zone)."""
    zone_idx = -1
    for pfn in range(start_pfn, end_pfn):
        if m.flags[pfn] & (PG_hole | PG_offline):
            continue
        z = m.zone_id[pfn]
        if zone_idx < 0:
            zone_idx = z
        elif z != zone_idx:
            return None
    if zone_idx < 0 or zone_idx >= len(m.zones):
        return None
    zone = m.zones[zone_idx]
    if start_pfn < zone.zone_start_pfn or end_pfn > zone.zone_end_pfn:
        return None
    return zone


@kernel
def init_per_zone_wmark_min(m: Machine) -> Gen:
    """Recompute min_free_kbytes, every zone's watermarks and lowmem reserves
    (:func:`pagesim.model.build.init_per_zone_wmark_min`), and since 5.14
    (``zone_highsize``, where ``high`` follows the low watermark) every zone's pcp
    limits through zone_pcp_update(zone, 0) ([K600]/[K619] setup_per_zone_wmarks)."""
    build.init_per_zone_wmark_min(m)
    if not m.kernel.zone_highsize:
        yield point("init_per_zone_wmark_min")
        return
    for zone in m.zones:
        yield from zone_pcp_update(m, zone, 0)


@kernel
def __offline_isolated_pages(m: Machine, zone: Zone, start_pfn: int, end_pfn: int) -> Gen:
    """Take the range's free buddies off the ISOLATE lists (no free counter changes: they
    were never counted) and mark its sections offline; returns the managed pages removed
    ([K511] mm/page_alloc.c :8848-8885; [K619] :7292-7336).

    Every page must be a free buddy by now (test_pages_isolated passed, and nothing
    leaves an ISOLATE list); anything else is the kernel's BUG_ON. The kernel marks the
    sections offline just before taking ``zone->lock``, and offline_pages() fixes
    ``nr_isolate_pageblock`` in a lock section of its own right after this returns; the
    model does both inside this section, so no step sees offline pages still on a free
    list, or offline blocks still counted as isolated. Nothing can tell the difference:
    the counter is read only under ``zone->lock``, by has_isolate_pageblock() (5.x),
    where a stale non-zero value would only cause an extra, correct, re-read of a
    pageblock's type.
    """
    yield local_irq_save()
    yield spin_lock(zone.lock)
    pfn = start_pfn
    while pfn < end_pfn:
        if m.refcount[pfn] or not m.flags[pfn] & PG_buddy:
            raise BadPage(f"pfn {pfn:#x}: offlining a page that is not a free buddy "
                          "(BUG_ON in __offline_isolated_pages)")
        order = m.private[pfn]
        if get_pageblock_migratetype(m, pfn) != MIGRATE_ISOLATE:
            raise BadPage(f"pfn {pfn:#x}: offlining a free page of a block that is not "
                          "isolated")
        del_page_from_free_list(m, zone, pfn, order)
        pfn += 1 << order
    n = end_pfn - start_pfn
    m.flags[start_pfn:end_pfn] = bytes([PG_offline]) * n
    m.private[start_pfn:end_pfn] = bytes(n)
    zone.nr_isolate_pageblock -= n >> m.geom.pageblock_order
    yield spin_unlock(zone.lock)
    yield local_irq_restore()
    return n


def _section_online(m: Machine, zone: Zone, pfn: int) -> bool:
    return pfn_to_online_page(m, pfn) and m.zone_id[pfn] == zone.idx


def shrink_zone_span(m: Machine, zone: Zone, start_pfn: int, end_pfn: int) -> None:
    """Shrink the zone's span when the offlined range was at one of its ends, to the
    next online pfn of the zone ([K510] mm/memory_hotplug.c :353-441; the kernel steps
    by subsection, 2 MiB = one pageblock on x86-64, as the model does)."""
    step = m.geom.pageblock_nr_pages
    if zone.zone_start_pfn == start_pfn:
        for pfn in range(end_pfn, zone.zone_end_pfn, step):
            if _section_online(m, zone, pfn):
                zone.spanned_pages = zone.zone_end_pfn - pfn
                zone.zone_start_pfn = pfn
                return
        zone.zone_start_pfn = 0
        zone.spanned_pages = 0
    elif zone.zone_end_pfn == end_pfn:
        for pfn in range(start_pfn - 1, zone.zone_start_pfn - 1, -step):
            if _section_online(m, zone, pfn):
                zone.spanned_pages = pfn - zone.zone_start_pfn + 1
                return
        zone.zone_start_pfn = 0
        zone.spanned_pages = 0


def remove_pfn_range_from_zone(m: Machine, zone: Zone, start_pfn: int, nr_pages: int) -> None:
    """After offline: shrink the zone's span ([K510] :470-507). The kernel also poisons
    the range's struct pages; the model keeps them PG_offline."""
    shrink_zone_span(m, zone, start_pfn, start_pfn + nr_pages)


def move_pfn_range_to_zone(m: Machine, zone: Zone, start_pfn: int, nr_pages: int) -> None:
    """Give an offline range to ``zone``: grow the zone's span, point the pages at it and
    make every pageblock isolated ([K510] :691-725 with MIGRATE_ISOLATE; [K619] with
    MIGRATE_MOVABLE and the isolate bit). The pages stay offline until online_pages()
    counts the blocks. Nobody reads these blocks' bits yet (no page in them is free or
    allocated), so they are written directly."""
    end_pfn = start_pfn + nr_pages
    if not zone.spanned_pages or start_pfn < zone.zone_start_pfn:
        old_end = zone.zone_end_pfn if zone.spanned_pages else 0
        zone.zone_start_pfn = start_pfn
        zone.spanned_pages = max(end_pfn, old_end) - start_pfn
    else:
        zone.spanned_pages = max(end_pfn, zone.zone_end_pfn) - zone.zone_start_pfn
    m.zone_id[start_pfn:end_pfn] = bytes([zone.idx]) * nr_pages
    bits = (PB_migrate_isolate | MIGRATE_MOVABLE) if m.kernel.isolate_bit else MIGRATE_ISOLATE
    pb_order = m.geom.pageblock_order
    first, last = start_pfn >> pb_order, (end_pfn - 1) >> pb_order
    m.pageblock_flags[first:last + 1] = bytes([bits]) * (last - first + 1)


@kernel
def __free_pages_core(m: Machine, pfn: int, order: int) -> Gen:
    """Hand a block of just-onlined pages to the buddy: refcount 0, no longer reserved,
    counted as managed, then __free_pages_ok(FPI_TO_TAIL), which bypasses the pcplists
    ([K510] mm/page_alloc.c :1532-1559; [K619] :1613-1659, generic_online_page). The
    block goes to the ISOLATE lists: its pageblocks are isolated until online ends."""
    n = 1 << order
    m.flags[pfn:pfn + n] = bytes(n)
    m.refcount[pfn:pfn + n] = array("i", bytes(4 * n))
    m.private[pfn] = order
    page_zone(m, pfn).managed_pages += n
    yield from __free_pages_ok(m, pfn, order, FPI_TO_TAIL)


@kernel
def online_pages_range(m: Machine, start_pfn: int, nr_pages: int) -> Gen:
    """Free the range in the largest chunks its alignment allows, up to max order
    ([K510] :610-627 always max order; [K619] :658-700, the same for section-aligned
    ranges)."""
    pfn = start_pfn
    end_pfn = start_pfn + nr_pages
    max_order = m.geom.max_order
    while pfn < end_pfn:
        order = min(max_order, (pfn & -pfn).bit_length() - 1) if pfn else max_order
        yield from __free_pages_core(m, pfn, order)
        pfn += 1 << order


def _check_range(m: Machine, start_pfn: int, nr_pages: int) -> bool:
    sec = m.geom.pages_per_section
    end_pfn = start_pfn + nr_pages
    return bool(nr_pages > 0 and start_pfn >= 0 and end_pfn <= m.end_pfn
                and not start_pfn % sec and not end_pfn % sec)


# =======================================================================================
# offline_pages


@kernel
def offline_pages(m: Machine, start_pfn: int, nr_pages: int,
                  max_retries: int | None = None, on_bound: Any = None) -> Gen:
    """Take ``[start_pfn, start_pfn + nr_pages)`` (whole sections, one zone, no holes)
    out of the buddy: 0 or a negative errno ([K510] mm/memory_hotplug.c :1452-1623;
    [K511] :1451-1619; [K619] :1894-2097). The steps, in the kernel's order:

    1. -EINVAL unless section aligned; take mem_hotplug_lock; -EINVAL for holes
       ("memory holes") or several zones ("multizone range");
    2. 5.11+: zone_pcp_disable(zone); 5.14+: lru_cache_disable();
    3. start_isolate_page_range(MIGRATE_MOVABLE): -EBUSY if a block holds an unmovable
       page or is already isolated ("failure to isolate range");
    4. until test_pages_isolated() passes: rounds of (signal? -EINTR "signal backoff";
       cond_resched; 5.x lru_add_drain_all; scan_movable_pages; do_migrate_range) until
       no movable page is left, then the test; 5.9-5.10 drain_all_pages(zone) after each
       failed test;
    5. __offline_isolated_pages; nr_isolate_pageblock -= the range's blocks (both in
       one ``zone->lock`` section here, see there); 5.14+ lru_cache_enable; 5.11+
       zone_pcp_enable;
    6. managed and present pages; init_per_zone_wmark_min; an empty zone gets
       zone_pcp_reset, else 5.8-5.13 zone_pcp_update(zone); the zone's span shrinks.

    On failure after isolation: undo_isolate_page_range, then (5.14+) lru_cache_enable
    and (5.11+) zone_pcp_enable. ``max_retries`` is the model-only bound of the module
    docstring; ``on_bound``, a ``@kernel`` function of no arguments, is asked when the
    bound is reached and returns how many more rounds to allow (0: give up). Scenarios
    use it for fairness: wait until the other CPUs have stopped, then see whether the
    offline can finish on its own (see pagesim.scenarios.offline). Offlining pages
    that are already offline is a caller bug (ModelError).
    """
    hp = hotplug_state(m)
    if not _check_range(m, start_pfn, nr_pages):
        hp.log.append(HotplugEvent("offline", start_pfn, nr_pages, -EINVAL,
                                   "range not section aligned"))
        yield point("offline_pages: -EINVAL")
        return -EINVAL
    if m.flags[start_pfn:start_pfn + nr_pages].count(PG_offline):
        raise ModelError(f"offline_pages: [{start_pfn:#x}, {start_pfn + nr_pages:#x}) "
                         "is already (partly) offline")
    yield mutex_lock(hp.lock)
    ret, reason, retries = yield from _offline_pages_locked(m, hp, start_pfn,
                                                            start_pfn + nr_pages, max_retries,
                                                            on_bound)
    yield mutex_unlock(hp.lock)
    hp.log.append(HotplugEvent("offline", start_pfn, nr_pages, ret, reason, retries))
    return ret


@kernel
def _offline_pages_locked(m: Machine, hp: MemoryHotplug, start_pfn: int, end_pfn: int,
                          max_retries: int | None, on_bound: Any) -> Gen:
    """offline_pages() between mem_hotplug_begin and mem_hotplug_done ([K510]
    mm/memory_hotplug.c:1452-1623; [K619] :1894-2097); returns (ret, reason, rounds
    without progress)."""
    k = m.kernel
    nr_pages = end_pfn - start_pfn
    if any(f & PG_hole for f in m.flags[start_pfn:end_pfn]):
        return -EINVAL, "memory holes", 0
    zone = test_pages_in_a_zone(m, start_pfn, end_pfn)
    if zone is None:
        return -EINVAL, "multizone range", 0
    if k.zone_pcp_disable:
        yield from zone_pcp_disable(m, zone)
    if k.lru_cache_disable:
        yield from lru_cache_disable(m)
    retries = 0
    ret = yield from start_isolate_page_range(m, start_pfn, end_pfn, MIGRATE_MOVABLE,
                                              MEMORY_OFFLINE | REPORT_FAILURE)
    if ret:
        reason = "failure to isolate range"
    else:
        ret, reason, retries = yield from _migrate_until_isolated(m, hp, zone, start_pfn,
                                                                  end_pfn, max_retries,
                                                                  on_bound)
        if not ret:
            yield from _offline_isolated_range(m, zone, start_pfn, nr_pages)
            return 0, "", retries
        yield from undo_isolate_page_range(m, start_pfn, end_pfn, MIGRATE_MOVABLE)
    if k.lru_cache_disable:
        yield from lru_cache_enable(m)
    if k.zone_pcp_disable:
        yield from zone_pcp_enable(m, zone)
    return ret, reason, retries


@kernel
def _migrate_until_isolated(m: Machine, hp: MemoryHotplug, zone: Zone, start_pfn: int,
                            end_pfn: int, max_retries: int | None, on_bound: Any) -> Gen:
    """The do/while loops of offline_pages() ([K510] mm/memory_hotplug.c:1452-1623;
    [K619] :1894-2097): migrate until no movable page is left, test, repeat until the
    test passes; returns (ret, reason, rounds without progress)."""
    k = m.kernel
    retries = 0
    while True:
        pfn = start_pfn
        while True:
            if (yield READ_ONCE(hp, "signal_pending")):
                return -EINTR, "signal backoff", retries
            yield point("offline_pages: cond_resched")
            if not k.lru_cache_disable:
                yield from lru_add_drain_all(m)
            pfn = yield from scan_movable_pages(m, pfn, end_pfn)
            if pfn < 0:
                break
            if (yield from do_migrate_range(m, pfn, end_pfn)):
                retries += 1
                vm_events(m).offline_retries += 1
                if max_retries is not None and retries >= max_retries:
                    more = 0 if on_bound is None else (yield from on_bound())
                    if not more:
                        return -EBUSY, RETRY_BOUND, retries
                    max_retries += more
                    on_bound = None
        ret = yield from test_pages_isolated(m, start_pfn, end_pfn, MEMORY_OFFLINE)
        if not ret:
            return 0, "", retries
        retries += 1
        vm_events(m).offline_retries += 1
        if k.offline_drain_on_retry and not k.zone_pcp_disable:
            yield from drain_all_pages(m, zone)
        if max_retries is not None and retries >= max_retries:
            more = 0 if on_bound is None else (yield from on_bound())
            if not more:
                return -EBUSY, RETRY_BOUND, retries
            max_retries += more
            on_bound = None


@kernel
def _offline_isolated_range(m: Machine, zone: Zone, start_pfn: int, nr_pages: int) -> Gen:
    """The success path of offline_pages() from __offline_isolated_pages on ([K510]
    mm/memory_hotplug.c:1452-1623, [K619] :1894-2097, the code after the loops)."""
    k = m.kernel
    managed = yield from __offline_isolated_pages(m, zone, start_pfn, start_pfn + nr_pages)
    # (the nr_isolate_pageblock fixup is folded into __offline_isolated_pages)
    if k.lru_cache_disable:
        yield from lru_cache_enable(m)
    if k.zone_pcp_disable:
        yield from zone_pcp_enable(m, zone)
    zone.managed_pages -= managed
    zone.present_pages -= nr_pages
    yield from init_per_zone_wmark_min(m)
    if not zone.present_pages:
        yield from zone_pcp_reset(m, zone)
    elif not k.zone_highsize:
        yield from zone_pcp_update(m, zone)
    remove_pfn_range_from_zone(m, zone, start_pfn, nr_pages)


# =======================================================================================
# online_pages


@kernel
def online_pages(m: Machine, pfn: int, nr_pages: int, zone: Zone) -> Gen:
    """Give an offline range (whole sections) to ``zone`` and its pages to the buddy
    ([K510] :780-870; [K619] :1144-1250; the zone is chosen by the caller, as in 6.x,
    with zone_for_pfn_range()):

    1. move_pfn_range_to_zone: every pageblock isolated;
    2. under ``zone->lock``: nr_isolate_pageblock += the range's blocks, and (model) the
       sections become online, their pages reserved;
    3. setup_zone_pageset if the zone had no present pages;
    4. online_pages_range: max-order chunks to the ISOLATE lists, bypassing pcplists;
    5. present pages; 5.8-5.13 zone_pcp_update(zone);
    6. undo_isolate_page_range(MIGRATE_MOVABLE): the chunks move to the MOVABLE lists
       (a max-order page larger than a pageblock is re-freed so it merges);
    7. init_per_zone_wmark_min (5.14+: every zone's pcp limits with it).

    Onlining does not disable pcplists: no page of the range is on one, and none can get
    there before step 6 (its blocks are isolated).
    """
    k = m.kernel
    hp = hotplug_state(m)
    end_pfn = pfn + nr_pages
    if not _check_range(m, pfn, nr_pages):
        hp.log.append(HotplugEvent("online", pfn, nr_pages, -EINVAL,
                                   "range not section aligned"))
        yield point("online_pages: -EINVAL")
        return -EINVAL
    if m.flags[pfn:end_pfn].count(PG_offline) != nr_pages:
        raise ModelError(f"online_pages: [{pfn:#x}, {end_pfn:#x}) is not entirely offline")
    yield mutex_lock(hp.lock)
    move_pfn_range_to_zone(m, zone, pfn, nr_pages)
    yield local_irq_save()
    yield spin_lock(zone.lock)
    zone.nr_isolate_pageblock += nr_pages >> m.geom.pageblock_order
    m.flags[pfn:end_pfn] = bytes([PG_reserved]) * nr_pages
    m.refcount[pfn:end_pfn] = array("i", [1]) * nr_pages
    yield spin_unlock(zone.lock)
    yield local_irq_restore()
    if not zone.present_pages:
        yield from setup_zone_pageset(m, zone)
    yield from online_pages_range(m, pfn, nr_pages)
    zone.present_pages += nr_pages
    if not k.zone_highsize:
        yield from zone_pcp_update(m, zone)
    yield from undo_isolate_page_range(m, pfn, end_pfn, MIGRATE_MOVABLE)
    yield from init_per_zone_wmark_min(m)
    yield mutex_unlock(hp.lock)
    hp.log.append(HotplugEvent("online", pfn, nr_pages, 0))
    return 0

