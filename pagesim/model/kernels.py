# SPDX-License-Identifier: GPL-2.0-only
"""Kernel generations as data.

Every behavioural difference between the releases pagesim models is one entry in
:data:`CHANGES`, carrying the release that introduced it and the mainline commit (or the
source that dates it). Model code never compares version numbers: it asks the kernel
object for a named feature (``kernel.zone_pcp_disable``), so that a hypothetical variant
("v5.11 without the forced drain") is just the same table with one entry overridden.

Releases whose dating the spec leaves open are marked ``dated="inferred"`` with the
reason, so that a user reading ``pagesim kernels`` knows how far to trust the boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Oldest and newest release modelled. v5.8 is the last release before the
#: "drain again on every retry" workaround; v6.19 is "current" in the spec.
OLDEST = (5, 8)
NEWEST = (6, 19)
#: Last minor number of each major series that exists.
_LAST_MINOR = {5: 19, 6: 19}


class UnknownKernelError(ValueError):
    """A kernel name pagesim cannot model; the message names the accepted range."""


@dataclass(frozen=True)
class Change:
    """One behavioural change of the page allocator between releases."""

    name: str
    since: tuple[int, int]
    commit: str
    summary: str
    dated: str = "verified"  # "verified" from the cited trees, or "inferred" (see summary)


def _c(name: str, since: tuple[int, int], commit: str, summary: str,
       dated: str = "verified") -> Change:
    return Change(name, since, commit, summary, dated)


#: The changes, oldest first. Feature names are attributes of :class:`Kernel`.
CHANGES: tuple[Change, ...] = (
    _c("zone_batchsize_floor_one", (6, 19), "(not identified; 6.18.35 tree has the old "
           "form, 6.19.0 the new)",
           "zone_batchsize() is min(managed >> 12, 256K / PAGE_SIZE) and returns 1 (not 0) "
           "for zones under 8192 pages; callers clamp to 1 since 5.14, so only the raw "
           "value differs", "inferred"),
    _c("pcp_free_high", (5, 18), "f26b3fa04611",
           "a high-order free during a freeing run (free_factor > 0) flushes the whole "
           "pcp (nr_pcp_high() returns 0); absent from 5.17.0, present in 5.19.0",
           "inferred"),
    _c("free_high_threshold_high_min", (6, 16), "(N. Dhama, 'mm: pcp: increase "
           "pcp->free_count threshold to trigger free_high', 7 Apr 2025; Fixes: "
           "6ccdcb6d3a74)",
           "6.7+ free_high needs free_count >= batch + high_min / 2 instead of >= batch; "
           "absent from 6.8.0, present in 6.18.35", "inferred"),
    _c("khugepaged_min_free_on_hotplug", (5, 10), "4aab2be09830",
           "init_per_zone_wmark_min() ends with khugepaged_min_free_kbytes_update(), so "
           "memory on/offline re-applies the THP min_free_kbytes recommendation; merged "
           "after the v5.9 tag (Cc stable), present in [K510]"),
    _c("lowmem_reserve_sum_upper", (5, 11), "(L. Stoakes, 'refactor "
           "setup_per_zone_lowmem_reserve()', 29 Nov 2020; new form in [K511])",
           "lowmem_reserve[j] of a zone sums all zones above it up to j; before, zones "
           "with a zero ratio (Movable) were left out of the higher columns"),
    _c("wmark_promo", (6, 0), "c574bbe91703 (id from memory, not checked)",
           "WMARK_PROMO = high + the low/high distance (NUMA memory tiering); absent "
           "from 5.19.0, present in [K600]"),
    _c("wmark_movable_highmem", (6, 6), "(liuq, 'mm/page_alloc: fix min_free_kbytes "
           "calculation regarding ZONE_MOVABLE', v4 21 Jun 2023; absent from 6.5.3, "
           "present in [K606])",
           "ZONE_MOVABLE is left out of lowmem_pages and gets the small highmem min"),
    _c("offline_drain_on_retry", (5, 9), "9683182612214a",
       "offline_pages() calls drain_all_pages() after every failed test_pages_isolated()"),
    _c("zone_pcp_disable", (5, 11), "ec6e8c7e0314",
       "offline_pages() brackets isolation with zone_pcp_disable()/zone_pcp_enable() "
       "(high 0, batch 1, one drain of every CPU) and no longer drains after a failed "
       "test_pages_isolated()"),
    _c("drain_force_all_cpus", (5, 11), "ec6e8c7e0314",
       "__drain_all_pages(zone, force_all_cpus): zone_pcp_disable() drains every online CPU "
       "instead of those whose pcp->count it reads as non-zero (without it, a variant "
       "keeps the racy count check of spec §6.3)"),
    _c("isolation_users_drain", (5, 11), "7612921f2376",
       "set_migratetype_isolate() no longer drains; its users drain instead"),
    _c("pageset_zone_cache", (5, 11), "0a8b4f1d5bf4, 952eaf815925",
       "pcp high/batch computed once per zone and cached in zone->pageset_high/batch"),
    _c("pageset_update_unordered", (5, 11), "5c3ad2eb7104",
       "pageset_update() writes batch then high with WRITE_ONCE and no barriers"),
    _c("trace_zone_locked_found_only", (5, 11), "(not identified; [K510] :2874 vs [K511])",
       "__rmqueue() emits mm_page_alloc_zone_locked only for a page it found; 5.10 emits it "
       "after a failed attempt too (page NULL, pfn 0)"),
    _c("pcp_high_order_lists", (5, 13), "44042b449872",
       "pcplists hold orders 0..PAGE_ALLOC_COSTLY_ORDER (+ THP order); count is in pages",
       "inferred"),
    _c("zone_highsize", (5, 14), "74f44822097c",
       "pcp high = max(low watermark or managed/fraction over the node's CPUs, 4*batch); "
       "vm.percpu_pagelist_high_fraction replaces vm.percpu_pagelist_fraction; "
       "setup_per_zone_wmarks() ends with zone_pcp_update() of every zone, so memory "
       "on/offline recomputes pcp limits through init_per_zone_wmark_min()"),
    _c("lru_cache_disable", (5, 14), "(M. Kim, 'mm: disable LRU pagevec during the "
       "migration temporarily'; absent from [K511], present in [K514])",
       "offline_pages() calls lru_cache_disable()/lru_cache_enable() around isolation "
       "instead of lru_add_drain_all() in every scan round (no-ops in the model, which "
       "has no LRU pagevecs; kept so each generation's call sequence is the kernel's)",
       "inferred"),
    _c("pcp_free_scaling", (5, 14), "3b12e7e97938",
       "nr_pcp_high()/nr_pcp_free() with free_factor scale the pages freed per flush",
       "inferred"),
    _c("pcp_local_lock", (5, 14), "dbbee9d5cd83",
       "pcplists protected by a per-CPU local_lock (still IRQs off on !PREEMPT_RT)"),
    _c("tracepoint_pfn_hex", (5, 14), "(bracketed by the 5.11 and 5.14 trees)",
       "kmem tracepoints print pfn=0x%lx instead of pfn=%lu", "inferred"),
    _c("pcp_bulk_single_pass", (5, 18), "(M. Gorman, 2022)",
       "free_pcppages_bulk() empties whole lists in turn, starting at the list just added "
       "to, in one pass under zone->lock (no batch_free heuristic)", "inferred"),
    _c("pcp_spinlock", (6, 0), "4b23a68f9536, 01b44456a7aa",
       "each per_cpu_pages has a spinlock; local users trylock it and fall back to the buddy"),
    _c("remote_drain", (6, 0), "443c2accd1b6",
       "__drain_all_pages() drains other CPUs' pcplists from the caller under their pcp->lock"),
    _c("pcp_irqs_enabled", (6, 2), "5749077415994",
       "pcp operations leave IRQs enabled (pcp_spin_trylock without irqsave)", "inferred"),
    _c("max_order_inclusive", (6, 4), "23baf831a32c",
       "MAX_ORDER becomes inclusive (later MAX_PAGE_ORDER / NR_PAGE_ORDERS); same 11 orders"),
    _c("pcp_high_autotune", (6, 7), "51a755c56dc0",
       "pcp->high tuned between high_min and high_max; free_count, alloc_factor, "
       "decay_pcp_high() (zoneinfo prints high_min/high_max only from 6.13 on)"),
    _c("no_pcp_migratetype_cache", (6, 10), "[M-hannes] 20240320180429.678181-2",
       "the migratetype cached in page->index is gone; free_pcppages_bulk() always reads "
       "the pageblock"),
    _c("freelist_hygiene", (6, 10), "[M-hannes] series ('mm: page_alloc: freelist "
       "migratetype hygiene', in v6.10-rc1); absent from the 6.8 tree, present in the "
       "6.11.11 and 6.13.7 trees",
       "a free block is always on its pageblock's list: a fallback that does not claim the "
       "pageblock takes only the page it needs and leaves the rest of the block on the "
       "block's own type (steal_suitable_fallback single_page); free pages change lists "
       "only together with the block's type"),
    _c("drain_zone_chunked", (6, 10), "(L. Stach, spring 2024)",
       "drain_pages_zone() drains in chunks of batch << CONFIG_PCP_BATCH_SCALE_MAX", "inferred"),
    _c("drain_count_locked", (6, 11), "(Li Zhijian, July 2024; Fixes: 4b23a68f9536)",
       "drain_pages_zone() reads pcp->count under pcp->lock", "inferred"),
    _c("isolate_bit", (6, 17), "(Zi Yan, v6 posted 30 May 2025)",
       "pageblock isolation is a separate bit; the 3-bit migratetype survives isolation",
       "inferred"),
)

_BY_NAME = {c.name: c for c in CHANGES}


def parse_version(text: str) -> tuple[int, int]:
    """``"v5.11"``, ``"5.11"`` or ``"v6.1.192"`` → ``(5, 11)``; anything else raises."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if not m:
        raise UnknownKernelError(
            f"unknown kernel {text!r}: expected a release such as v5.11 or v6.1")
    ver = (int(m.group(1)), int(m.group(2)))
    last = _LAST_MINOR.get(ver[0])
    if last is None or ver[1] > last or ver < OLDEST or ver > NEWEST:
        raise UnknownKernelError(
            f"unknown kernel {text!r}: pagesim models v{OLDEST[0]}.{OLDEST[1]} to "
            f"v{NEWEST[0]}.{NEWEST[1]}")
    return ver


@dataclass(frozen=True)
class Kernel:
    """A kernel generation: a release plus optional overrides (a hypothetical variant).

    Each feature of :data:`CHANGES` is an attribute, true when the release has it. Hot
    paths read these attributes directly, so they are plain booleans, fixed at creation.
    """

    name: str
    version: tuple[int, int]
    overrides: tuple[tuple[str, bool], ...] = ()
    description: str = ""
    # The features (one per Change); filled in __post_init__.
    zone_batchsize_floor_one: bool = field(init=False)
    pcp_free_high: bool = field(init=False)
    free_high_threshold_high_min: bool = field(init=False)
    khugepaged_min_free_on_hotplug: bool = field(init=False)
    lowmem_reserve_sum_upper: bool = field(init=False)
    wmark_promo: bool = field(init=False)
    wmark_movable_highmem: bool = field(init=False)
    offline_drain_on_retry: bool = field(init=False)
    zone_pcp_disable: bool = field(init=False)
    drain_force_all_cpus: bool = field(init=False)
    isolation_users_drain: bool = field(init=False)
    pageset_zone_cache: bool = field(init=False)
    pageset_update_unordered: bool = field(init=False)
    trace_zone_locked_found_only: bool = field(init=False)
    pcp_high_order_lists: bool = field(init=False)
    zone_highsize: bool = field(init=False)
    lru_cache_disable: bool = field(init=False)
    pcp_free_scaling: bool = field(init=False)
    pcp_local_lock: bool = field(init=False)
    pcp_bulk_single_pass: bool = field(init=False)
    tracepoint_pfn_hex: bool = field(init=False)
    pcp_spinlock: bool = field(init=False)
    remote_drain: bool = field(init=False)
    pcp_irqs_enabled: bool = field(init=False)
    max_order_inclusive: bool = field(init=False)
    pcp_high_autotune: bool = field(init=False)
    no_pcp_migratetype_cache: bool = field(init=False)
    freelist_hygiene: bool = field(init=False)
    drain_zone_chunked: bool = field(init=False)
    drain_count_locked: bool = field(init=False)
    isolate_bit: bool = field(init=False)

    def __post_init__(self) -> None:
        over = dict(self.overrides)
        unknown = set(over) - set(_BY_NAME)
        if unknown:
            raise UnknownKernelError(f"unknown kernel feature(s): {', '.join(sorted(unknown))}")
        for change in CHANGES:
            value = over.get(change.name, self.version >= change.since)
            object.__setattr__(self, change.name, value)

    @property
    def cached_pcp_migratetype(self) -> bool:
        """5.x..6.9: the pcp paths stamp the pageblock type into page->index."""
        return not self.no_pcp_migratetype_cache

    def features(self) -> dict[str, bool]:
        return {c.name: bool(getattr(self, c.name)) for c in CHANGES}

    def __str__(self) -> str:
        return self.name


#: Named hypothetical variants: a base release with one ingredient of a fix removed or
#: added. Later issues add the isolation-specific ones; the mechanism lives here.
VARIANTS: dict[str, tuple[str, tuple[tuple[str, bool], ...], str]] = {}


def register_variant(name: str, base: str, overrides: dict[str, bool], description: str) -> None:
    """Make ``name`` resolvable by :func:`kernel`; used by the model modules that need it."""
    for feat in overrides:
        if feat not in _BY_NAME:
            raise UnknownKernelError(f"variant {name}: unknown feature {feat!r}")
    VARIANTS[name] = (base, tuple(sorted(overrides.items())), description)


#: the one Kernel of each release, and of each variant as registered: the sequential
#: forms are specialised per Kernel object (pagesim.runtime.linker), so every machine of
#: a generation must share one, or each new machine would pay for linking again
_RELEASES: dict[str, Kernel] = {}
_VARIANTS_MADE: dict[str, tuple[object, Kernel]] = {}


def kernel(name: str | Kernel) -> Kernel:
    """Resolve a kernel name (``v5.11``, ``5.11``, or a registered variant name); the
    same generation gives the same object."""
    if isinstance(name, Kernel):
        return name
    key = name.strip()
    spec = VARIANTS.get(key)
    if spec is not None:
        made = _VARIANTS_MADE.get(key)
        if made is None or made[0] != spec:
            base, over, desc = spec
            made = _VARIANTS_MADE[key] = (spec, Kernel(key, parse_version(base), over, desc))
        return made[1]
    ver = parse_version(key)
    canonical = f"v{ver[0]}.{ver[1]}"
    release = _RELEASES.get(canonical)
    if release is None:
        release = _RELEASES[canonical] = Kernel(canonical, ver)
    return release


#: Releases listed by ``pagesim kernels``: those where something in CHANGES begins, plus
#: the endpoints. Any release in the range is accepted, these are the milestones.
def releases() -> list[str]:
    """Every release pagesim models, oldest first (``v5.8`` ... ``v6.19``)."""
    return [f"v{major}.{minor}" for major in sorted(_LAST_MINOR)
            for minor in range(_LAST_MINOR[major] + 1)
            if OLDEST <= (major, minor) <= NEWEST]


def milestones() -> list[Kernel]:
    vers = sorted({OLDEST, NEWEST, *(c.since for c in CHANGES), (6, 1), (6, 6)})
    return [kernel(f"v{a}.{b}") for a, b in vers]


# Hypothetical variants: one ingredient of a fix taken away (or a later fix added), so a
# scenario can answer "what if" (issue: is the forced drain necessary?).
register_variant(
    "v5.11-unforced", "v5.11", {"drain_force_all_cpus": False},
    "v5.11 whose zone_pcp_disable() drains only the CPUs whose pcp->count it reads as "
    "non-zero (the optimised drain_all_pages() check the fix avoids, spec §6.3)")
register_variant(
    "v5.11-no-disable", "v5.11", {"zone_pcp_disable": False, "offline_drain_on_retry": True},
    "v5.11 without zone_pcp_disable(): offline_pages() isolates and drains on every failed "
    "test as 5.10 did (isolation users drain once, as 5.11's do)")
register_variant(
    "v6.0-locked-count", "v6.0", {"drain_count_locked": True},
    "v6.0 with the 6.11 fix: drain_pages_zone() reads pcp->count under pcp->lock "
    "(spec §6.5)")

DEFAULT_KERNEL = "v6.19"
