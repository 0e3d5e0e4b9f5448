# SPDX-License-Identifier: GPL-2.0-only
"""Per-CPU pagesets: their setup and every update of ``high``/``batch`` (mm/page_alloc.c).

The values come from :mod:`pagesim.model.pcp_limits`; this module is about *how* they
reach each CPU's ``per_cpu_pages``: which stores, in what order, under which lock. That
is what a concurrent free on another CPU can observe, so each store is a WRITE_ONCE.

``pcp_batch_high_lock`` serialises all updaters (zone_pcp_update, the sysctl handler,
and later zone_pcp_disable/enable), exactly as in the kernel.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pagesim.model import pcp_limits
from pagesim.model.mmzone import Machine, PerCpuPages, Zone
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import WRITE_ONCE, mutex_lock, mutex_unlock

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
