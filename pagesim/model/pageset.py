# SPDX-License-Identifier: GPL-2.0-only
"""Per-CPU pagesets: their setup and every update of ``high``/``batch`` (mm/page_alloc.c).

The values come from :mod:`pagesim.model.pcp_limits`; this module is about *how* they
reach each CPU's ``per_cpu_pages``: which stores, in what order, under which lock. That
is what a concurrent free on another CPU can observe, so each store is a WRITE_ONCE.

``pcp_batch_high_lock`` serialises all updaters (zone_pcp_update, the sysctl handler,
zone_pcp_disable/enable), exactly as in the kernel. zone_pcp_disable() keeps it until
zone_pcp_enable(), which is what keeps the limits at zero for the whole disabled period.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pagesim.model import pcp_limits
from pagesim.model.mmzone import Machine, PerCpuPages, Zone
from pagesim.model.page_alloc import __drain_all_pages
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    WRITE_ONCE,
    ModelError,
    local_irq_restore,
    local_irq_save,
    mutex_lock,
    mutex_unlock,
    point,
)

Gen = Generator[Any, Any, Any]

#: sysctl values 1..7 are rejected (MIN_PERCPU_PAGELIST_(HIGH_)FRACTION = 8)
MIN_PERCPU_PAGELIST_FRACTION = 8
EINVAL = 22


@kernel
def pageset_update(m: Machine, pcp: PerCpuPages, high: int, batch: int,
                   high_min: int | None = None, high_max: int | None = None) -> Gen:
    """Publish new limits to one CPU's pcp, which its owner reads without a lock.

    5.10 ([K510] :6273-6285): batch := 1, barrier, high, barrier, batch, so a reader never
    sees batch > high. 5.11 ([K511] :6327-6350): batch then high, no ordering promised.
    6.7+ ([K619] :6028-6034): batch, high_min, high_max; ``high`` itself is left for the
    owner to clamp at its next free or allocation.
    """
    k = m.kernel
    if k.pcp_high_autotune:
        yield WRITE_ONCE(pcp, "batch", batch)
        yield WRITE_ONCE(pcp, "high_min", high if high_min is None else high_min)
        yield WRITE_ONCE(pcp, "high_max", high if high_max is None else high_max)
        return
    if not k.pageset_update_unordered:
        yield WRITE_ONCE(pcp, "batch", 1)
        yield WRITE_ONCE(pcp, "high", high)
        yield WRITE_ONCE(pcp, "batch", batch)
        return
    yield WRITE_ONCE(pcp, "batch", batch)
    yield WRITE_ONCE(pcp, "high", high)


def zone_pcp_limits(m: Machine, zone: Zone, cpu_online: int = 0) -> pcp_limits.PcpLimits:
    """The limits the generation's formulas give for this zone now."""
    return pcp_limits.pcp_high_and_batch(
        m.kernel, zone.managed_pages, zone.low_wmark_pages(), m.nr_cpus,
        m.percpu_pagelist_fraction, cpu_online)


@kernel
def __zone_set_pageset_high_and_batch(m: Machine, zone: Zone, high: int, batch: int,
                                      high_min: int | None = None,
                                      high_max: int | None = None) -> Gen:
    """Write the limits into every possible CPU's pcp of the zone ([K511] :6373-6412)."""
    for pcp in zone.per_cpu_pageset:
        yield from pageset_update(m, pcp, high, batch, high_min, high_max)


@kernel
def zone_set_pageset_high_and_batch(m: Machine, zone: Zone, cpu_online: int = 0) -> Gen:
    """Recompute the zone's limits and, if they changed (5.11+ caches them per zone),
    write them to every CPU ([K511] :6389-6412; [K619] :6074-6104). 5.10 computes per
    CPU but with the same result for every CPU."""
    if zone.boot_pageset:
        return
    lim = zone_pcp_limits(m, zone, cpu_online)
    high_min = lim.high_min if lim.high_min is not None else lim.high
    high_max = lim.high_max if lim.high_max is not None else lim.high
    if m.kernel.pageset_zone_cache and (
            zone.pageset_high, zone.pageset_batch, zone.pageset_high_min,
            zone.pageset_high_max) == (lim.high, lim.batch, high_min, high_max):
        return
    zone.pageset_high = lim.high
    zone.pageset_batch = lim.batch
    zone.pageset_high_min = high_min
    zone.pageset_high_max = high_max
    yield from __zone_set_pageset_high_and_batch(m, zone, lim.high, lim.batch, high_min,
                                                 high_max)


@kernel
def setup_zone_pageset(m: Machine, zone: Zone) -> Gen:
    """Give a populated zone real per-CPU pagesets, initialised as boot pagesets are
    (high 0, batch 1), then computed ([K510] setup_zone_pageset, [K619]
    per_cpu_pages_init)."""
    zone.per_cpu_pageset = [
        PerCpuPages(f"pcp[cpu{c}][{zone.name}]", c, m.nr_pcp_lists,
                    pcp_limits.BOOT_PAGESET_HIGH, pcp_limits.BOOT_PAGESET_BATCH)
        for c in range(m.nr_cpus)]
    zone.boot_pageset = False
    zone.pageset_high = pcp_limits.BOOT_PAGESET_HIGH
    zone.pageset_batch = pcp_limits.BOOT_PAGESET_BATCH
    zone.pageset_high_min = zone.pageset_high_max = pcp_limits.BOOT_PAGESET_HIGH
    yield from zone_set_pageset_high_and_batch(m, zone, 0)


@kernel
def zone_pcp_update(m: Machine, zone: Zone, cpu_online: int = 0) -> Gen:
    """Recompute a zone's limits under ``pcp_batch_high_lock`` (after on/offlining,
    watermark changes, CPU hotplug; [K511] :8796-8801, [K619] :6131-6136)."""
    yield mutex_lock(m.pcp_batch_high_lock)
    yield from zone_set_pageset_high_and_batch(m, zone, cpu_online)
    yield mutex_unlock(m.pcp_batch_high_lock)


# ---------------------------------------------------------------------------------------
# Disabling a zone's pcplists while its pageblocks are isolated (memory offline)
#
# Why "high 0, then one forced drain of every CPU" leaves no page of an isolated
# pageblock on any pcplist once zone_pcp_disable() has returned (spec §6.4):
#
# Call W the stores with which zone_pcp_disable() gives every possible CPU's pcp of the
# zone the limits high 0 / batch 1 (6.7+: high_min = high_max = 0, batch 1), and, for each
# online CPU c, D_c the drain of c's lists that the forced __drain_all_pages() performs
# after W and waits for. Call a pcp section S on c any stretch of code that can leave
# pages on c's lists of the zone: a free's commit (add the page, raise count, read high,
# flush if count >= high) or an allocation that refills an empty list (read batch, move
# that many pages from the buddy to the list, raise count, take one). S and D_c exclude
# each other: in 5.x both run with interrupts off on c itself (D_c is a work item bound
# to c); in 6.x both hold c's pcp->lock (the drain takes it from the calling CPU, a local
# user trylocks it and goes to the buddy if that fails). So one finishes before the other
# starts, and there are two cases:
#
# * S before D_c. What S left on the list -- a freed page it kept because it read the
#   old, large high; the rest of a refill sized with the old batch -- is still there when
#   D_c runs, unless later sections on c already took it, and D_c frees all of it to the
#   buddy. This is the case of a freer that was already inside its commit, past its read
#   of high, when W happened, and of an allocation that read batch before W: W cannot
#   stop them, the drain cleans up after them.
# * S after D_c. W comes before the queueing of D_c (5.x; the workqueue's own locking
#   orders the two, which the kernel relies on and spec §11 question 6 leaves open) or
#   before the drain takes c's pcp->lock (6.x, ordered by that lock), and S comes after
#   D_c on c, so S sees W's limits. A free then finds count >= high = 0 (6.7+: the clamp
#   of high into [high_min, high_max] makes it 0) and flushes before leaving the
#   section; free_pcppages_bulk() re-reads the block's type under zone->lock, so a page
#   of an isolated block goes to the ISOLATE free list, even if its freer cached the
#   block's type before the isolation. A refill fetches one page and hands it out at
#   once. Either way the list is empty when S ends.
#
# So from D_c on, c's lists of the zone are empty whenever no section runs on c, for as
# long as the limits stay zero, and that is until zone_pcp_enable(): this function keeps
# pcp_batch_high_lock, which every other writer of the limits takes (zone_pcp_update()
# after on/offline and, since 5.14, CPU hotplug; the sysctl). Frees and refills are
# covered by the same two cases. A page freed into an isolated block reaches the ISOLATE
# list within the section that frees it, so nothing is left for a later drain to find.
# A CPU that comes online later starts with empty lists and W's limits (W writes every
# possible CPU), and it cannot recompute them while the lock is held. Disabling before
# start_isolate_page_range() means no page of an isolated block is ever on a list where
# an allocation could take it.
#
# Why the drain must be forced, i.e. why the cheap check of drain_all_pages() is not
# enough (spec §6.3): that check reads c's pcp->count from the draining CPU, outside any
# section of c, and skips c when it reads 0. A section on c can have put pages on the
# list without having published the new count yet: a refill moves its batch from the
# buddy first and raises count afterwards (this needs no weak memory), and a commit
# raises count and then reads high with no barrier between, so with store buffering the
# drainer can read count 0 while c reads the old high. Then c is never drained, its
# pages stay, and with batch 1 each later free flushes one page but leaves the older ones
# (§5.4). Forcing every online CPU into the mask makes D_c exist for every c, so the case
# analysis needs no count at all. 6.0-6.10 reopened the same hole one level down (§6.5):
# the remote drain_pages_zone() read count before taking c's pcp->lock and returned on 0,
# so every CPU was visited but not every CPU drained. The argument needs the emptiness
# decision inside the section that excludes S, which 6.11 restored by reading count
# under the lock.


@kernel
def zone_pcp_disable(m: Machine, zone: Zone) -> Gen:
    """Make every pcplist of ``zone`` empty and keep it so ([K511] :8803-8816, [K619]
    :7242-7255): take ``pcp_batch_high_lock`` (held until zone_pcp_enable), write the
    boot limits into every CPU's pcp, then drain every CPU, forced. The comment above
    argues why this suffices and why the drain must be forced."""
    if not m.kernel.zone_pcp_disable:
        raise ModelError(f"{m.kernel}: zone_pcp_disable() does not exist before v5.11")
    yield mutex_lock(m.pcp_batch_high_lock)
    yield from __zone_set_pageset_high_and_batch(
        m, zone, pcp_limits.BOOT_PAGESET_HIGH, pcp_limits.BOOT_PAGESET_BATCH,
        pcp_limits.BOOT_PAGESET_HIGH, pcp_limits.BOOT_PAGESET_HIGH)
    yield from __drain_all_pages(m, zone, True)
    zone.pcp_disabled = True


@kernel
def zone_pcp_enable(m: Machine, zone: Zone) -> Gen:
    """Write the zone's cached limits back to every CPU and release
    ``pcp_batch_high_lock`` ([K511] :8818-8822; [K619] :7257-7261, which restores
    high_min/high_max/batch and leaves ``high`` for each CPU to re-clamp)."""
    zone.pcp_disabled = False
    yield from __zone_set_pageset_high_and_batch(
        m, zone, zone.pageset_high, zone.pageset_batch, zone.pageset_high_min,
        zone.pageset_high_max)
    yield mutex_unlock(m.pcp_batch_high_lock)


@kernel
def zone_pcp_reset(m: Machine, zone: Zone) -> Gen:
    """A zone that lost its last page goes back to the boot pagesets ([K510]
    :8735-8752, with interrupts off so that no drain of this CPU runs meanwhile; [K600] and
    [K619] :7264-7281 without). The per-CPU pagesets are freed with whatever they hold,
    so a page still on one would be leaked: the model refuses that."""
    irqs = not m.kernel.pcp_spinlock
    if irqs:
        yield local_irq_save()
    else:
        yield point("zone_pcp_reset")
    if not zone.boot_pageset:
        for pcp in zone.per_cpu_pageset:
            if pcp.count or any(pcp.lists):
                raise ModelError(f"zone_pcp_reset of {zone.name}: {pcp.name} still holds "
                                 f"{pcp.count} pages, which freeing it would leak")
        zone.per_cpu_pageset = m.boot_pagesets
        zone.boot_pageset = True
    if irqs:
        yield local_irq_restore()


@kernel
def percpu_pagelist_fraction_sysctl_handler(m: Machine, value: int) -> Gen:
    """Write ``vm.percpu_pagelist_fraction`` (5.8-5.13) or
    ``vm.percpu_pagelist_high_fraction`` (5.14+): 0 restores the default, 1..7 are
    -EINVAL; every populated zone is recomputed under ``pcp_batch_high_lock``
    ([K510] :8097-8128)."""
    if value < 0 or 0 < value < MIN_PERCPU_PAGELIST_FRACTION:
        return -EINVAL
    yield mutex_lock(m.pcp_batch_high_lock)
    if value != m.percpu_pagelist_fraction:
        m.percpu_pagelist_fraction = value
        for zone in m.zones:
            if zone.present_pages:
                yield from zone_set_pageset_high_and_batch(m, zone, 0)
    yield mutex_unlock(m.pcp_batch_high_lock)
    return 0


def set_pcp_limits(m: Machine, zone: Zone, high: int, batch: int) -> None:
    """Pin a zone's pcp limits to chosen values on every CPU (and in the zone's cache).

    Not a kernel interface: small scenarios need "high 3, batch 2" on zones whose
    formulas would give 0/1. Later recomputations (zone_pcp_update) replace them, as they
    would replace a sysctl-derived value.
    """
    if batch < 1 or high < 0:
        raise ValueError(f"pcp limits high {high}, batch {batch}: batch must be >= 1 and "
                         "high >= 0")
    if zone.boot_pageset:
        raise ValueError(f"zone {zone.name} is not populated and uses the boot pagesets")
    zone.pageset_high = zone.pageset_high_min = zone.pageset_high_max = high
    zone.pageset_batch = batch
    for pcp in zone.per_cpu_pageset:
        pcp.high = pcp.high_min = pcp.high_max = high
        pcp.batch = batch
