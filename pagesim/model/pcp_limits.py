# SPDX-License-Identifier: GPL-2.0-only
"""The numbers behind the per-CPU page lists: ``batch``, ``high`` and how they move.

Everything here is a pure function of plain integers, so that the model (which keeps a
pcp's fields in its own objects) and the golden tests (which read them from
/proc/zoneinfo) share one implementation. Nothing here stores anything: the caller
writes the returned values back, in whatever order the generation's store sequence
prescribes (see :mod:`pagesim.model.pageset`).

Three generations of the static limits (mm/page_alloc.c):

* 5.8-5.13 (``not k.zone_highsize``): ``high = 6 * batch`` from ``zone_batchsize()``, or,
  with ``vm.percpu_pagelist_fraction = f``, ``high = managed / f`` and ``batch`` a quarter
  of it capped at ``PAGE_SHIFT * 8`` ([K510] ``pageset_set_batch``/``pageset_set_high``;
  [K511] ``zone_set_pageset_high_and_batch``).
* 5.14-6.6 (``k.zone_highsize``): ``high = zone_highsize()``: the zone's low watermark (or
  ``managed / vm.percpu_pagelist_high_fraction``) split over the node's CPUs, at least
  ``4 * batch`` ([K514], [K600], [K606] ``zone_highsize``).
* 6.7+ (``k.pcp_high_autotune``): the same formula gives ``high_min``; ``high_max`` uses
  ``managed / 8`` unless the sysctl pins both to one value; ``pcp->high`` itself floats
  between them ([K619] ``zone_set_pageset_high_and_batch``).

And of the dynamic rules applied at each free/refill:

* 5.8-5.13: a free that brings ``count`` to ``high`` flushes ``batch`` pages; a refill
  takes ``batch`` pages (:func:`nr_pcp_refill`).
* 5.14-6.6: :func:`nr_pcp_high_scaled` / :func:`nr_pcp_free_scaled` (``free_factor``),
  with :func:`free_high_scaled` since 5.18; refills as before (:func:`nr_pcp_refill`).
* 6.7+: :func:`pcp_free_commit` then :func:`nr_pcp_high` / :func:`nr_pcp_free` on a
  free, :func:`nr_pcp_alloc` on a refill, :func:`decay_pcp_high` from vmstat
  (``free_count``, ``alloc_factor``, ``flags``, ``high_min``/``high_max``).

Which generation does what is read from :mod:`pagesim.model.kernels` features only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pagesim.model.geometry import PAGE_ALLOC_COSTLY_ORDER
from pagesim.model.kernels import Kernel

#: x86-64 4 KiB pages (arch/x86/include/asm/page_types.h). The 5.x fraction variant caps
#: batch at ``PAGE_SHIFT * 8`` and zone_batchsize() caps at a byte size, so both depend on it.
PAGE_SHIFT = 12

#: The boot pageset (and a disabled zone) caches nothing: every free flushes at once
#: ([K511] mm/page_alloc.c, [K619] mm/page_alloc.c: BOOT_PAGESET_HIGH/BATCH).
BOOT_PAGESET_HIGH = 0
BOOT_PAGESET_BATCH = 1

#: CONFIG_PCP_BATCH_SCALE_MAX default (mm/Kconfig since 6.7): how far free_count,
#: alloc_factor and the drain chunk may scale batch (as a shift).
PCP_BATCH_SCALE_MAX = 5

#: include/linux/mmzone.h pcp->flags (6.7+): the previous free on this pcp was of order
#: 1..PAGE_ALLOC_COSTLY_ORDER; the CPU's cache slice holds more than 3 batches.
PCPF_PREV_FREE_HIGH_ORDER = 1 << 0
PCPF_FREE_HIGH_BATCH = 1 << 1

#: Smallest non-zero value of vm.percpu_pagelist_fraction (5.8-5.13) and of
#: vm.percpu_pagelist_high_fraction (5.14+): MIN_PERCPU_PAGELIST_(HIGH_)FRACTION.
#: 6.7+ also uses it as the divisor of high_max when the sysctl is 0.
MIN_PERCPU_PAGELIST_FRACTION = 8




def _rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _kclamp(val: int, lo: int, hi: int) -> int:
    """include/linux/minmax.h ``__clamp`` (6.x): tests ``hi`` first, so lo > hi gives hi
    for val >= hi and lo otherwise. 5.14/6.0 used min(max(val, lo), hi); the callers below
    that were already present then only pass val >= lo, where both agree."""
    if val >= hi:
        return hi
    if val <= lo:
        return lo
    return val


def _check_nonneg(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def zone_batchsize(managed: int, k: Kernel, *, page_shift: int = PAGE_SHIFT) -> int:
    """The pcp batch for a zone of ``managed`` pages, before the callers' ``max(1, ...)``.

    About a thousandth of the zone, at most 1 MiB worth, divided by four and rounded down
    to ``2^n - 1`` (power-of-two batches alias badly in caches). mm/page_alloc.c
    ``zone_batchsize`` ([K510], [K511], [K514], [K600], [K606]); 6.19 ([K619]) writes the
    same as ``min(managed >> 12, 256K / PAGE_SIZE)`` and returns 1 where the older form
    returns 0 (zones under 8192 pages), which matters only before 5.14, when 0 made
    ``high = 6 * 0 = 0``.
    """
    _check_nonneg(managed=managed)
    cap = max(1, (1 << (20 - page_shift)) // 4)  # SZ_1M / PAGE_SIZE / 4 == SZ_256K / PAGE_SIZE
    batch = min(managed >> 12, cap)
    if batch <= 1 and k.zone_batchsize_floor_one:
        return 1
    batch = max(batch, 1)
    return _rounddown_pow_of_two(batch + batch // 2) - 1


def check_percpu_pagelist_fraction(fraction: int, k: Kernel) -> None:
    """Reject what the sysctl rejects: negative (``extra1 = SYSCTL_ZERO``) and 1..7.

    [K510] ``percpu_pagelist_fraction_sysctl_handler``; [K514]..[K619]
    ``percpu_pagelist_high_fraction_sysctl_handler``: EINVAL, the old value is kept.
    """
    sysctl = ("vm.percpu_pagelist_high_fraction" if k.zone_highsize
              else "vm.percpu_pagelist_fraction")
    if fraction < 0 or 0 < fraction < MIN_PERCPU_PAGELIST_FRACTION:
        raise ValueError(
            f"{sysctl} = {fraction} is rejected by the kernel (EINVAL): it must be 0 "
            f"(default) or >= {MIN_PERCPU_PAGELIST_FRACTION}")


def nr_split_cpus(nr_cpus: int, cpu_online: int = 0, online_cpus: int | None = None) -> int:
    """How many CPUs share a zone's pcp budget in :func:`zone_highsize` (5.14+).

    The node's CPUs plus the one being onlined (its cpumask bit is not set yet when
    ``page_alloc_cpu_online`` runs); a memory-only node splits over all online CPUs.
    """
    _check_nonneg(nr_cpus=nr_cpus, cpu_online=cpu_online)
    split = nr_cpus + cpu_online
    if split == 0:
        if online_cpus is None or online_cpus <= 0:
            raise ValueError("zone on a node without CPUs: pass online_cpus "
                             "(num_online_cpus()) to split its pcp high over")
        split = online_cpus
    return split


def zone_highsize(managed: int, low_wmark: int, batch: int, nr_cpus: int,
                  cpu_online: int = 0, high_fraction: int = 0, *,
                  online_cpus: int | None = None) -> int:
    """Per-CPU high since 5.14: the zone's budget split over its node's CPUs, >= 4*batch.

    The budget defaults to the low watermark, so that full pcplists alone do not wake
    kswapd; with a fraction it is ``managed / fraction``. ``batch`` is the already
    clamped ``max(1, zone_batchsize)``. mm/page_alloc.c ``zone_highsize`` ([K514], [K600],
    [K606]; [K619] passes the fraction as an argument).
    """
    _check_nonneg(managed=managed, low_wmark=low_wmark, batch=batch,
                  high_fraction=high_fraction)
    total = low_wmark if high_fraction == 0 else managed // high_fraction
    high = total // nr_split_cpus(nr_cpus, cpu_online, online_cpus)
    return max(high, batch << 2)


@dataclass(frozen=True)
class PcpLimits:
    """The limits ``zone_set_pageset_high_and_batch`` would publish for a zone.

    ``high`` is, per generation:

    * 5.8-6.6: the value written to every CPU's ``pcp->high`` (and, from 5.11, cached in
      ``zone->pageset_high``); ``high_min``/``high_max`` are None.
    * 6.7+: the kernel writes only ``high_min``/``high_max``/``batch``; ``pcp->high`` of a
      fresh pcp is 0 and is clamped into ``[high_min, high_max]`` by the CPU's next
      free or refill, and :func:`decay_pcp_high` brings it back to ``high_min`` when
      idle. ``high`` is that resting value, ``high_min``.
    """

    high: int
    batch: int
    high_min: int | None = None
    high_max: int | None = None


def pcp_high_and_batch(k: Kernel, managed: int, low_wmark: int, nr_cpus: int,
                       fraction: int = 0, cpu_online: int = 0, *,
                       online_cpus: int | None = None,
                       page_shift: int = PAGE_SHIFT) -> PcpLimits:
    """The generation's pcp limits for a zone (see the module docstring).

    ``low_wmark`` is ``low_wmark_pages(zone)`` (``_watermark[WMARK_LOW]`` plus boost),
    ``nr_cpus`` the CPUs of the zone's node, ``fraction`` the value of
    vm.percpu_pagelist_fraction (5.8-5.13) or vm.percpu_pagelist_high_fraction (5.14+),
    ``cpu_online`` 1 while a CPU is being onlined. Before 5.14 only ``managed`` and
    ``fraction`` matter. [K510] ``pageset_set_high_and_batch``; [K511], [K514], [K606],
    [K619] ``zone_set_pageset_high_and_batch``.
    """
    _check_nonneg(managed=managed, low_wmark=low_wmark, nr_cpus=nr_cpus,
                  cpu_online=cpu_online)
    check_percpu_pagelist_fraction(fraction, k)
    if not k.zone_highsize:
        if fraction:
            high = managed // fraction
            batch = max(1, high // 4)
            if high // 4 > page_shift * 8:
                batch = page_shift * 8
            return PcpLimits(high=high, batch=batch)
        raw = zone_batchsize(managed, k, page_shift=page_shift)
        return PcpLimits(high=6 * raw, batch=max(1, raw))
    batch = max(1, zone_batchsize(managed, k, page_shift=page_shift))
    if not k.pcp_high_autotune:
        high = zone_highsize(managed, low_wmark, batch, nr_cpus, cpu_online, fraction,
                             online_cpus=online_cpus)
        return PcpLimits(high=high, batch=batch)
    if fraction:
        high_min = zone_highsize(managed, low_wmark, batch, nr_cpus, cpu_online, fraction,
                                 online_cpus=online_cpus)
        high_max = high_min
    else:
        high_min = zone_highsize(managed, low_wmark, batch, nr_cpus, cpu_online, 0,
                                 online_cpus=online_cpus)
        high_max = zone_highsize(managed, low_wmark, batch, nr_cpus, cpu_online,
                                 MIN_PERCPU_PAGELIST_FRACTION, online_cpus=online_cpus)
    return PcpLimits(high=high_min, batch=batch, high_min=high_min, high_max=high_max)


# --- dynamic rules before 6.7 ---------------------------------------------------------

def nr_pcp_refill(k: Kernel, batch: int, order: int = 0) -> int:
    """Pages a pcp refill asks ``rmqueue_bulk`` for, before 6.7 (6.7+: :func:`nr_pcp_alloc`).

    5.8-5.12 cache order 0 only and take ``batch``; 5.13+ scale by order so that a
    high-order refill moves about ``batch`` pages, but leave a batch of 1 (small zone,
    boot or disabled pageset) alone so those never cache anything. mm/page_alloc.c
    ``__rmqueue_pcplist`` ([K511], [K514], [K600], [K606]).
    """
    if not k.pcp_high_order_lists:
        if order:
            raise ValueError("pcplists hold order 0 only before 5.13 (pcp_high_order_lists)")
        return batch
    if batch > 1:
        return max(batch >> order, 2)
    return batch


def nr_pcp_high_scaled(high: int, batch: int, *, reclaim_active: bool,
                       free_high: bool = False) -> int:
    """The flush threshold a free compares ``count`` with, 5.14-6.6.

    0 for a disabled/boot pageset (every free flushes) and for a high-order free in a
    freeing run (5.18+, :func:`free_high_scaled`; before, pass False); under reclaim
    at most ``4 * batch`` so that pages do not sit on pcplists while kswapd works.
    mm/page_alloc.c ``nr_pcp_high`` ([K514], [K600], [K606]).
    """
    if high == 0 or free_high:
        return 0
    if not reclaim_active:
        return high
    return min(batch << 2, high)


def free_high_scaled(k: Kernel, free_factor: int, order: int) -> bool:
    """Whether a free is a high-order free inside a freeing run, 5.18-6.6: such pages
    fragment memory if they pile up on the pcp, so the commit flushes them all
    (:func:`nr_pcp_high_scaled` returns 0, :func:`nr_pcp_free_scaled` frees ``count``).
    mm/page_alloc.c ``free_unref_page_commit`` ([K600], [K606]; [K514] has no such case).
    """
    return (k.pcp_free_high and free_factor > 0
            and 0 < order <= PAGE_ALLOC_COSTLY_ORDER)


#: ScaledFree: (nr_to_free, free_factor). Result of :func:`nr_pcp_free_scaled`: pages to hand to
#: ``free_pcppages_bulk`` (which takes at most ``count``) and the pcp's new ``free_factor``.
#: A plain tuple: these run on every pcp free and refill, where building a
#: NamedTuple would cost more than the arithmetic.
ScaledFree = tuple[int, int]


def nr_pcp_free_scaled(count: int, high: int, batch: int, free_factor: int, *,
                       free_high: bool = False, scale_max: int | None = None) -> ScaledFree:
    """How many pages a flushing free releases, 5.14-6.6; doubles on each flush in a row.

    ``high`` is :func:`nr_pcp_high_scaled`'s threshold, ``count`` the pcp's count after
    the add. Consecutive frees without an allocation double the amount (``free_factor``,
    halved again by each pcp allocation), always leaving at least ``batch`` pages; a
    threshold below ``batch`` (disabled or boot pageset) frees exactly one page.
    ``scale_max`` caps ``free_factor``: None for mainline 5.14-6.6 ([K514], [K600]),
    :data:`PCP_BATCH_SCALE_MAX` for the stable 6.1.y/6.6.y kernels that carry the 6.7
    "restrict the pcp batch scale factor" backport ([K606] and 6.1.158).
    mm/page_alloc.c ``nr_pcp_free``.
    """
    if free_high:
        return (count, free_factor)
    if high < batch:
        return (1, free_factor)
    min_nr_free = batch
    max_nr_free = high - batch
    scaled = batch << free_factor
    if scaled < max_nr_free and (scale_max is None or free_factor < scale_max):
        free_factor += 1
    # scaled >= min_nr_free always, so the 5.14 min(max()) clamp and __clamp agree.
    return (_kclamp(scaled, min_nr_free, max_nr_free), free_factor)


# --- dynamic rules since 6.7 (PCP high auto-tuning) -----------------------------------

#: FreeCommit: (free_high, flags, free_count). Result of :func:`pcp_free_commit`: whether this free
#: ends a high-order run, and the pcp's new ``flags`` and ``free_count``.
#: A plain tuple: these run on every pcp free and refill, where building a
#: NamedTuple would cost more than the arithmetic.
FreeCommit = tuple[bool, int, int]


def pcp_free_commit(k: Kernel, order: int, count: int, free_count: int, batch: int,
                    high_min: int, flags: int) -> FreeCommit:
    """The bookkeeping a 6.7+ free does between adding the page and :func:`nr_pcp_high`.

    Two high-order frees in a row with enough freed recently (``free_count``) mark a
    freeing run: such pages would fragment memory if kept, so the free flushes. Since
    6.16 "enough" also includes half of ``high_min``, so that runs of normal size keep
    their pages. Unless the CPU's cache slice is large (PCPF_FREE_HIGH_BATCH clear), the
    run triggers regardless of ``count``. ``free_count`` then grows by the page, up to
    ``batch << PCP_BATCH_SCALE_MAX``. ``count`` is after the add; the caller also halves
    ``alloc_factor``. mm/page_alloc.c ``free_frozen_page_commit`` ([K619]; 6.8's
    ``free_unref_page_commit`` uses the plain ``batch`` threshold).
    """
    free_high = False
    if 0 < order <= PAGE_ALLOC_COSTLY_ORDER:
        threshold = batch
        if k.free_high_threshold_high_min:
            threshold += high_min // 2
        free_high = (free_count >= threshold
                     and bool(flags & PCPF_PREV_FREE_HIGH_ORDER)
                     and (not flags & PCPF_FREE_HIGH_BATCH or count >= batch))
        flags |= PCPF_PREV_FREE_HIGH_ORDER
    else:
        flags &= ~PCPF_PREV_FREE_HIGH_ORDER
    if free_count < batch << PCP_BATCH_SCALE_MAX:
        free_count += 1 << order
    return (free_high, flags, free_count)


#: PcpHigh: (threshold, pcp_high). Result of :func:`nr_pcp_high`: the threshold this free compares
#: ``count`` with, and the value to store back into ``pcp->high``.
#: A plain tuple: these run on every pcp free and refill, where building a
#: NamedTuple would cost more than the arithmetic.
PcpHigh = tuple[int, int]


def nr_pcp_high(pcp_high: int, high_min: int, high_max: int, count: int, free_count: int,
                batch: int, *, free_high: bool, reclaim_active: bool,
                below_high: bool) -> PcpHigh:
    """Flush threshold of a free, 6.7+, and how the free retunes ``pcp->high``.

    ``pcp->high`` is first pulled into ``[high_min, high_max]`` (so a new or disabled
    pcp picks up its limits here). Then: 0 means never cache; a high-order freeing
    streak (``free_high``) lowers high and flushes; reclaim (ZONE_RECLAIM_ACTIVE) or a
    zone below its high watermark (ZONE_BELOW_HIGH) shrink high by the recent free
    volume; a full list otherwise grows high for next time, but *this* free still uses
    the old value. ``count``/``free_count`` are the pcp's after the add; ``batch`` is
    READ_ONCE(pcp->batch). mm/page_alloc.c ``nr_pcp_high`` ([K619]; same in 6.8, 6.18).
    """
    high = _kclamp(pcp_high, high_min, high_max)
    new_high = high
    if high == 0:
        return (0, new_high)
    if free_high:
        return (0, max(high - (batch << PCP_BATCH_SCALE_MAX), high_min))
    if reclaim_active:
        new_high = max(high - max(free_count, batch), high_min)
        return (min(batch << 2, new_high), new_high)
    if high_min == high_max:
        return (high, new_high)
    if below_high:
        new_high = max(high - max(free_count, batch), high_min)
        return (max(count, high_min), new_high)
    if count >= high:
        need_high = free_count + batch
        if new_high < need_high:
            new_high = _kclamp(need_high, high_min, high_max)
    return (high, new_high)


def nr_pcp_free(count: int, free_count: int, batch: int, high: int, *,
                free_high: bool) -> int:
    """Pages a flushing free releases, 6.7+ (the caller frees them in ``batch`` chunks).

    Roughly what was freed recently (``free_count``), but leaving at least ``batch`` on
    the list; a threshold below ``batch`` (disabled/boot: high 0, batch 1) frees exactly
    one page; a high-order streak frees up to ``batch << PCP_BATCH_SCALE_MAX``. ``high``
    is :func:`nr_pcp_high`'s threshold. mm/page_alloc.c ``nr_pcp_free`` ([K619]).
    """
    if free_high:
        return min(count, batch << PCP_BATCH_SCALE_MAX)
    if high < batch:
        return 1
    return _kclamp(free_count, batch, high - batch)


#: PcpAlloc: (nr_to_alloc, pcp_high, alloc_factor). Result of :func:`nr_pcp_alloc`: pages to ask
#: ``rmqueue_bulk`` for, and the pcp's new ``high`` and ``alloc_factor``.
#: A plain tuple: these run on every pcp free and refill, where building a
#: NamedTuple would cost more than the arithmetic.
PcpAlloc = tuple[int, int, int]


def nr_pcp_alloc(pcp_high: int, high_min: int, high_max: int, count: int,
                 alloc_factor: int, batch: int, order: int, *, below_high: bool) -> PcpAlloc:
    """Refill size of an empty pcp list, 6.7+; doubles with each refill in a row.

    ``pcp->high`` is clamped as in :func:`nr_pcp_high`; a limit below ``batch``
    (disabled or boot pageset) refills exactly one page. Order-0 refills scale by
    ``alloc_factor`` (halved by each free) but never past ``high - count - batch``;
    auto-tuned pcps (high_min != high_max) not under ZONE_BELOW_HIGH raise ``high`` by
    the refill so it can be kept. ``count`` is the pcp's count before the refill.
    mm/page_alloc.c ``nr_pcp_alloc`` ([K619]; same in 6.8, 6.18).
    """
    high = new_high = _kclamp(pcp_high, high_min, high_max)
    if high < batch:
        return (1, new_high, alloc_factor)
    nr = batch << alloc_factor if order == 0 else batch
    if high_min != high_max and not below_high:
        high = new_high = min(high + nr, high_max)
    if order == 0:
        max_nr_alloc = max(high - count - batch, batch)
        if nr <= max_nr_alloc and alloc_factor < PCP_BATCH_SCALE_MAX:
            alloc_factor += 1
        nr = min(nr, max_nr_alloc)
    if nr > 1:
        nr = max(nr >> order, 2)
    return (nr, new_high, alloc_factor)


class PcpDecay(NamedTuple):
    """Result of :func:`decay_pcp_high`: the new ``pcp->high``, the pages to drain (in
    ``batch``-sized chunks, each under the pcp lock), and whether vmstat should come back."""

    pcp_high: int
    to_drain: int
    more_work: bool


def decay_pcp_high(pcp_high: int, high_min: int, count: int, batch: int) -> PcpDecay:
    """The periodic (vmstat) shrink of an idle pcp, 6.7+: high loses an eighth per run,
    never below ``high_min`` and never by more than ``batch << PCP_BATCH_SCALE_MAX``
    pages of drain at once; pages above the new high are drained.
    mm/page_alloc.c ``decay_pcp_high`` ([K619]).
    """
    _check_nonneg(pcp_high=pcp_high, high_min=high_min, count=count, batch=batch)
    more = False
    high = pcp_high
    if high > high_min:
        high = max(count - (batch << PCP_BATCH_SCALE_MAX), high - (high >> 3), high_min)
        more = high > high_min
    to_drain = max(0, count - high)
    return PcpDecay(high, to_drain, more or to_drain > 0)
