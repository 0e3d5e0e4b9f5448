# SPDX-License-Identifier: GPL-2.0-only
"""Which lines /proc/zoneinfo has, per kernel generation.

The renderer prints whatever a :class:`~pagesim.procfs.types.ZoneInfo` holds; this module
says what a given kernel *would* hold, so that a model machine can be dumped in the exact
shape of the release it imitates (and a capture can be checked against the release it
claims to come from). It is data, read from kernel sources and real captures:

* the watermark block, pageset block and trailer come from ``zoneinfo_show_print()`` in
  ``mm/vmstat.c``;
* the statistic names come from ``vmstat_text[]`` in ``mm/vmstat.c``, checked against
  ``enum zone_stat_item``, ``enum numa_stat_item`` and ``enum node_stat_item`` in
  ``include/linux/mmzone.h`` (same count of entries in every tree read).

Snapshots. A layout is known exactly only for the releases in :data:`SNAPSHOTS` (a source
tree or a real capture). Any other release in pagesim's range uses the newest snapshot
not after it: a line appears in the release that adds it, so the older snapshot is the
one we have evidence for, and ``ZoneinfoLayout.exact`` is false to say the answer is an
approximation. The gaps that matter (where two neighbouring snapshots differ) are:

* ``boost`` line: absent in 5.15, present in 5.17-rc5, so 5.16 is unknown (mapped to 5.15);
* ``promo`` line: absent in 6.11, present in 6.12;
* per-CPU ``high_min``/``high_max``: absent in 6.12, present in 6.13. Note that pcp high
  auto-tuning itself is older (6.7, ``Kernel.pcp_high_autotune``): 6.7 to 6.12 tune
  ``high`` between bounds they do not print;
* ``reserved_highatomic``/``free_highatomic`` trailer: absent in the 6.17 tree and the
  6.18 capture, present in 6.19;
* stat names: see the ``since``/``until`` of each entry below (the first snapshot that has
  it, the first that no longer has it);
* THP node counters printed in huge pages rather than pages: absent in 5.11, present in
  5.12 (``node_stats_in_thp_units``).

Build configuration. Some names depend on Kconfig. :data:`DISTRO_CONFIG` assumes a
typical x86-64 distribution kernel, matching both captures (Debian 6.1 and the 6.18
host): NUMA, SMP, SWAP, ZSMALLOC, NUMA_BALANCING, IOMMU_SUPPORT, HUGETLB_PAGE,
TRANSPARENT_HUGEPAGE, MEMORY_ISOLATION and ZONE_DMA/DMA32/DEVICE on; CMA, UNACCEPTED_MEMORY and
SHADOW_CALL_STACK (arm64 only) off. Without CMA the ``cma`` line is still printed (as 0,
``zone_cma_pages()``), but pagetypeinfo has no CMA column. Pass another
:class:`BuildConfig` to model a different build.

Snapshot sources (repository @ commit; files read: ``mm/vmstat.c``,
``include/linux/mmzone.h``). Third-party trees were used only where the cited files are
those of the initial import; "-rc" trees stand for the release they precede.

* 5.8: ``zaiqiang-dong/linux-5.8.18`` @ 9009c12e (5.8.18)
* 5.10: ``ejga2001/linux-5.10.7`` @ 3791f9c5 (spec key K510)
* 5.11: ``CompressionDuck/linux-5.11`` @ 2dbae366 (K511)
* 5.12: ``zhangyinjun/linux-5.12.9`` @ 38c16b0c
* 5.14: ``lsk-legends/linux-5.14`` @ 45477c32 (5.14-rc5 plus a research project; K514)
* 5.15: ``zcjie1/linux-5.15.100`` @ 5382e6c4 (root commit; later commits add comments)
* 5.17: ``dunli/linux-5.17`` @ a5835cac (5.17-rc5)
* 5.19: ``yishangzhang/linux-5.19`` @ 4a855052
* 6.0: ``ttyrion/linux-6.0.8`` @ b4dc3aa2 (K600)
* 6.1: the Debian 6.1.192 captures in ``tests/data/reference`` (and ``krr-io/linux-6.1.0``
  @ 2a410d07, 6.1-rc7, which agrees)
* 6.6: ``lxdklp/linux-6.6.y`` @ 5aa5a1b8 (6.6.57; K606)
* 6.8: ``sndrzt/linux-6.8`` @ 68520c5d (6.8.1)
* 6.11: ``segzix/linux-6.11.11`` @ 323e1467
* 6.12: ``wishday/linux-6.12.y`` @ 21ae40e8 (6.12.19)
* 6.13: ``ChenRuiwei/linux-6.13.7`` @ 4ebf2100
* 6.17: ``busysteve/linux-6.17.0-rust-ported-c`` @ 1e9822c1 (files under ``linux/``)
* 6.18: the host-6.18 capture in ``tests/data/reference``
* 6.19: ``matankalina/linux-6.19.10-fork`` @ 483059de (K619), which agrees with the 6.18
  capture on every name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagesim.model.kernels import NEWEST, OLDEST, Kernel, kernel

Version = tuple[int, int]


@dataclass(frozen=True)
class BuildConfig:
    """The Kconfig options that change what /proc/zoneinfo and /proc/pagetypeinfo list."""

    numa: bool = True  # NUMA stats (numa_hit ...) are printed
    smp: bool = True  # "vm stats threshold" per CPU
    swap: bool = True  # nr_swapcached
    zsmalloc: bool = True  # nr_zspages
    numa_balancing: bool = True  # pgpromote_*
    iommu_support: bool = True  # nr_iommu_pages
    hugetlb_page: bool = True  # nr_hugetlb
    unaccepted_memory: bool = False  # nr_unaccepted
    shadow_call_stack: bool = False  # nr_shadow_call_stack (arm64)
    transparent_hugepage: bool = True  # THP counters printed in huge pages (5.12+)
    zone_dma: bool = True
    zone_dma32: bool = True
    zone_device: bool = True
    cma: bool = False  # CMA migratetype column in pagetypeinfo
    memory_isolation: bool = True  # Isolate migratetype column in pagetypeinfo


#: The build every layout assumes unless told otherwise (see the module docstring).
DISTRO_CONFIG = BuildConfig()


@dataclass(frozen=True)
class _Snapshot:
    version: Version
    source: str


#: Releases whose layout was read from a source tree or a capture, oldest first.
SNAPSHOTS: tuple[_Snapshot, ...] = (
    _Snapshot((5, 8), "zaiqiang-dong/linux-5.8.18@9009c12e mm/vmstat.c"),
    _Snapshot((5, 10), "ejga2001/linux-5.10.7@3791f9c5 mm/vmstat.c"),
    _Snapshot((5, 11), "CompressionDuck/linux-5.11@2dbae366 mm/vmstat.c"),
    _Snapshot((5, 12), "zhangyinjun/linux-5.12.9@38c16b0c mm/vmstat.c"),
    _Snapshot((5, 14), "lsk-legends/linux-5.14@45477c32 mm/vmstat.c (5.14-rc5)"),
    _Snapshot((5, 15), "zcjie1/linux-5.15.100@5382e6c4 mm/vmstat.c"),
    _Snapshot((5, 17), "dunli/linux-5.17@a5835cac mm/vmstat.c (5.17-rc5)"),
    _Snapshot((5, 19), "yishangzhang/linux-5.19@4a855052 mm/vmstat.c"),
    _Snapshot((6, 0), "ttyrion/linux-6.0.8@b4dc3aa2 mm/vmstat.c"),
    _Snapshot((6, 1), "capture debian-6.1-2cpu-* (Debian 6.1.192)"),
    _Snapshot((6, 6), "lxdklp/linux-6.6.y@5aa5a1b8 mm/vmstat.c"),
    _Snapshot((6, 8), "sndrzt/linux-6.8@68520c5d mm/vmstat.c"),
    _Snapshot((6, 11), "segzix/linux-6.11.11@323e1467 mm/vmstat.c"),
    _Snapshot((6, 12), "wishday/linux-6.12.y@21ae40e8 mm/vmstat.c"),
    _Snapshot((6, 13), "ChenRuiwei/linux-6.13.7@4ebf2100 mm/vmstat.c"),
    _Snapshot((6, 17), "busysteve/linux-6.17.0-rust-ported-c@1e9822c1 linux/mm/vmstat.c"),
    _Snapshot((6, 18), "capture host-6.18 (Linux 6.18.44)"),
    _Snapshot((6, 19), "matankalina/linux-6.19.10-fork@483059de mm/vmstat.c"),
)

#: First snapshot printing each optional line of zoneinfo_show_print().
CMA_LINE_SINCE: Version = (5, 12)
BOOST_LINE_SINCE: Version = (5, 17)
PROMO_LINE_SINCE: Version = (6, 12)
PCP_HIGH_MIN_MAX_SINCE: Version = (6, 13)
HIGHATOMIC_TRAILER_SINCE: Version = (6, 19)
#: First snapshot dividing the THP node counters by HPAGE_PMD_NR in zoneinfo
#: (``vmstat_item_print_in_thp()``, include/linux/mmzone.h; absent in the 5.11 tree).
THP_UNITS_SINCE: Version = (5, 12)
_THP_COUNTERS = ("nr_shmem_hugepages", "nr_shmem_pmdmapped", "nr_file_hugepages",
                 "nr_file_pmdmapped", "nr_anon_transparent_hugepages")


@dataclass(frozen=True)
class _Stat:
    """One name of vmstat_text[]: printed from ``since`` until before ``until``."""

    name: str
    since: Version = OLDEST
    until: Version | None = None
    needs: str | None = None  # a BuildConfig attribute that must be true

    def present(self, snap: Version, config: BuildConfig) -> bool:
        if snap < self.since or (self.until is not None and snap >= self.until):
            return False
        return self.needs is None or bool(getattr(config, self.needs))


# Every name that any snapshot prints, in print order (the relative order of names never
# changes between snapshots, which is checked by the tests against the captures).
_ZONE_STATS: tuple[_Stat, ...] = (
    _Stat("nr_free_pages"),
    _Stat("nr_free_pages_blocks", since=(6, 17)),
    _Stat("nr_zone_inactive_anon"),
    _Stat("nr_zone_active_anon"),
    _Stat("nr_zone_inactive_file"),
    _Stat("nr_zone_active_file"),
    _Stat("nr_zone_unevictable"),
    _Stat("nr_zone_write_pending"),
    _Stat("nr_mlock"),
    _Stat("nr_page_table_pages", until=(5, 11)),  # becomes a node stat
    _Stat("nr_kernel_stack", until=(5, 10)),  # becomes a node stat
    _Stat("nr_shadow_call_stack", until=(5, 10), needs="shadow_call_stack"),
    _Stat("nr_bounce", until=(6, 17)),
    _Stat("nr_zspages", needs="zsmalloc"),
    _Stat("nr_free_cma"),
    _Stat("nr_unaccepted", since=(6, 6), needs="unaccepted_memory"),
)

_NUMA_STATS: tuple[_Stat, ...] = tuple(
    _Stat(name, needs="numa")
    for name in ("numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local",
                 "numa_other")
)

_NODE_STATS: tuple[_Stat, ...] = (
    _Stat("nr_inactive_anon"),
    _Stat("nr_active_anon"),
    _Stat("nr_inactive_file"),
    _Stat("nr_active_file"),
    _Stat("nr_unevictable"),
    _Stat("nr_slab_reclaimable"),
    _Stat("nr_slab_unreclaimable"),
    _Stat("nr_isolated_anon"),
    _Stat("nr_isolated_file"),
    _Stat("workingset_nodes"),
    _Stat("workingset_refault_anon", since=(5, 10)),
    _Stat("workingset_refault_file", since=(5, 10)),
    _Stat("workingset_activate_anon", since=(5, 10)),
    _Stat("workingset_activate_file", since=(5, 10)),
    _Stat("workingset_restore_anon", since=(5, 10)),
    _Stat("workingset_restore_file", since=(5, 10)),
    _Stat("workingset_refault", until=(5, 10)),
    _Stat("workingset_activate", until=(5, 10)),
    _Stat("workingset_restore", until=(5, 10)),
    _Stat("workingset_nodereclaim"),
    _Stat("nr_anon_pages"),
    _Stat("nr_mapped"),
    _Stat("nr_file_pages"),
    _Stat("nr_dirty"),
    _Stat("nr_writeback"),
    _Stat("nr_writeback_temp", until=(6, 17)),
    _Stat("nr_shmem"),
    _Stat("nr_shmem_hugepages"),
    _Stat("nr_shmem_pmdmapped"),
    _Stat("nr_file_hugepages"),
    _Stat("nr_file_pmdmapped"),
    _Stat("nr_anon_transparent_hugepages"),
    _Stat("nr_vmscan_write"),
    _Stat("nr_vmscan_immediate_reclaim"),
    _Stat("nr_dirtied"),
    _Stat("nr_written"),
    _Stat("nr_throttled_written", since=(5, 17)),
    _Stat("nr_kernel_misc_reclaimable"),
    _Stat("nr_foll_pin_acquired"),
    _Stat("nr_foll_pin_released"),
    _Stat("nr_kernel_stack", since=(5, 10)),
    _Stat("nr_shadow_call_stack", since=(5, 10), needs="shadow_call_stack"),
    _Stat("nr_page_table_pages", since=(5, 11)),
    _Stat("nr_sec_page_table_pages", since=(6, 1)),
    _Stat("nr_iommu_pages", since=(6, 11), needs="iommu_support"),
    _Stat("nr_swapcached", since=(5, 12), needs="swap"),
    _Stat("pgpromote_success", since=(5, 19), needs="numa_balancing"),
    _Stat("pgpromote_candidate", since=(6, 1), needs="numa_balancing"),
    _Stat("pgpromote_candidate_nrl", since=(6, 18), needs="numa_balancing"),
    _Stat("pgdemote_kswapd", since=(6, 8)),
    _Stat("pgdemote_direct", since=(6, 8)),
    _Stat("pgdemote_khugepaged", since=(6, 8)),
    _Stat("pgdemote_proactive", since=(6, 17)),
    _Stat("nr_hugetlb", since=(6, 13), needs="hugetlb_page"),
    _Stat("nr_balloon_pages", since=(6, 17)),
    _Stat("nr_kernel_file_pages", since=(6, 18)),
)

#: Trailer lines of a populated zone, in print order, and where each starts.
_TRAILER: tuple[tuple[str, Version], ...] = (
    ("node_unreclaimable", OLDEST),
    ("start_pfn", OLDEST),
    ("reserved_highatomic", HIGHATOMIC_TRAILER_SINCE),
    ("free_highatomic", HIGHATOMIC_TRAILER_SINCE),
)


@dataclass(frozen=True)
class ZoneinfoLayout:
    """The shape of /proc/zoneinfo for one kernel generation and build configuration."""

    #: the release asked about
    version: Version
    #: the snapshot whose layout this is (the newest one not after ``version``)
    snapshot: Version
    #: where that snapshot was read
    source: str
    #: true when ``version`` is itself a snapshot, false for an approximation
    exact: bool
    #: every zone of a node, in print order (populated or not); also the length of the
    #: ``protection:`` tuple (MAX_NR_ZONES)
    zone_names: tuple[str, ...]
    boost: bool
    promo: bool
    cma: bool
    #: pagesets print high_min/high_max (and the wider labels that go with them)
    pageset_high_min_max: bool
    #: pagesets print "vm stats threshold" (CONFIG_SMP)
    vm_stats_threshold: bool
    #: "per-node stats" names, printed under the node's first populated zone
    node_stats: tuple[str, ...]
    #: zone stat names (enum zone_stat_item), printed for each populated zone
    zone_stats: tuple[str, ...]
    #: NUMA event names, printed right after the zone stats (empty without CONFIG_NUMA)
    numa_stats: tuple[str, ...]
    #: the trailer lines of a populated zone (names before the colon)
    trailer: tuple[str, ...]
    #: per-node stats whose printed value is the page count divided by HPAGE_PMD_NR
    #: (counted in huge pages, unlike /proc/vmstat which prints pages)
    node_stats_in_thp_units: tuple[str, ...] = ()

    @property
    def stats(self) -> tuple[str, ...]:
        """Zone then NUMA names: the order of ``ZoneInfo.stats`` for a populated zone."""
        return self.zone_stats + self.numa_stats


def snapshot_for(version: Version) -> _Snapshot:
    """The newest snapshot not after ``version`` (versions outside pagesim's range raise)."""
    if version < OLDEST or version > NEWEST:
        raise ValueError(f"kernel {version[0]}.{version[1]} is outside pagesim's range")
    best = SNAPSHOTS[0]
    for snap in SNAPSHOTS:
        if snap.version <= version:
            best = snap
    return best


def zoneinfo_layout(k: Kernel | str, config: BuildConfig = DISTRO_CONFIG) -> ZoneinfoLayout:
    """The /proc/zoneinfo layout of kernel ``k`` built with ``config``.

    Only ``k.version`` matters: a hypothetical variant (a release with one behaviour
    overridden) prints what its base release prints.
    """
    kern = kernel(k)
    snap = snapshot_for(kern.version)
    v = snap.version

    def names(stats: tuple[_Stat, ...]) -> tuple[str, ...]:
        return tuple(s.name for s in stats if s.present(v, config))

    zones = tuple(
        name
        for name, on in (
            ("DMA", config.zone_dma),
            ("DMA32", config.zone_dma32),
            ("Normal", True),
            ("Movable", True),
            ("Device", config.zone_device),
        )
        if on
    )
    return ZoneinfoLayout(
        version=kern.version,
        snapshot=v,
        source=snap.source,
        exact=v == kern.version,
        zone_names=zones,
        boost=v >= BOOST_LINE_SINCE,
        promo=v >= PROMO_LINE_SINCE,
        cma=v >= CMA_LINE_SINCE,
        pageset_high_min_max=v >= PCP_HIGH_MIN_MAX_SINCE,
        vm_stats_threshold=config.smp,
        node_stats=names(_NODE_STATS),
        zone_stats=names(_ZONE_STATS),
        numa_stats=names(_NUMA_STATS),
        trailer=tuple(name for name, since in _TRAILER if v >= since),
        node_stats_in_thp_units=(
            _THP_COUNTERS if v >= THP_UNITS_SINCE and config.transparent_hugepage else ()),
    )


def migratetype_names(config: BuildConfig = DISTRO_CONFIG) -> tuple[str, ...]:
    """Column names of /proc/pagetypeinfo (``migratetype_names[]`` in mm/page_alloc.c).

    The same in every release pagesim models (read in the 5.10 and 6.19 trees); only the
    build configuration adds or removes CMA and Isolate.
    """
    names = ["Unmovable", "Movable", "Reclaimable", "HighAtomic"]
    if config.cma:
        names.append("CMA")
    if config.memory_isolation:
        names.append("Isolate")
    return tuple(names)
