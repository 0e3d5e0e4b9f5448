# SPDX-License-Identifier: GPL-2.0-only
"""pcp batch/high formulas and the dynamic flush/refill rules.

The golden part replays every /proc/zoneinfo capture in tests/data/reference: for each
zone with pagesets and each CPU, the formulas fed with that zone's managed pages and low
watermark, the machine's CPU count and the vm.percpu_pagelist_high_fraction in force
must give the printed batch and high (6.1) or high_min/high_max (6.18).
The files are read with :func:`pagesim.procfs.zoneinfo.parse_zoneinfo`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from pagesim.model import pcp_limits as pl
from pagesim.model.kernels import Kernel, kernel
from pagesim.procfs.types import ZoneInfo
from pagesim.procfs.zoneinfo import parse_zoneinfo

REFERENCE = Path(__file__).parent / "data" / "reference"
CAPTURE_DIRS = ("debian-6.1-2cpu-hotplug", "debian-6.1-2cpu-movablecore", "host-6.18")


@dataclass(frozen=True)
class Capture:
    """One capture directory's machine facts (from its info.txt)."""

    kernel: Kernel
    nr_cpus: int
    sysctl: dict[str, str]


def read_capture(d: Path) -> Capture:
    text = (d / "info.txt").read_text()
    ver = re.search(r"^Linux \S+ (\d+)\.(\d+)", text, re.M)
    assert ver, f"{d}/info.txt: no kernel version"
    sysctl = dict(re.findall(r"^(?:/proc/sys/vm/|vm\.)(\w+) = (.*)$", text, re.M))
    m = re.search(r"^nproc=(\d+)$", text, re.M) or re.search(r"^(\d+)$", text, re.M)
    assert m, f"{d}/info.txt: no CPU count"
    return Capture(kernel(f"v{ver.group(1)}.{ver.group(2)}"), int(m.group(1)), sysctl)


def zones_of(path: Path) -> list[ZoneInfo]:
    return parse_zoneinfo(path.read_text(), str(path)).zones


def fraction_of(path: Path, cap: Capture) -> int:
    """The snapshots named *fraction_N* were taken with the sysctl set to N; everything
    else with the value info.txt recorded (0)."""
    m = re.search(r"fraction_(\d+)", path.name)
    return int(m.group(1)) if m else int(cap.sysctl["percpu_pagelist_high_fraction"])


ZONEINFO_FILES = sorted(p for d in CAPTURE_DIRS for p in (REFERENCE / d).glob("*zoneinfo.txt"))


def test_every_capture_is_found() -> None:
    # 44 + 20 + 1 files at the time of writing; an empty glob would pass vacuously
    assert len(ZONEINFO_FILES) >= 65


@pytest.mark.parametrize("path", ZONEINFO_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_capture_pagesets_match_formulas(path: Path) -> None:
    cap = read_capture(path.parent)
    fraction = fraction_of(path, cap)
    checked = 0
    for z in zones_of(path):
        lim = pl.pcp_high_and_batch(cap.kernel, z.managed, z.low, cap.nr_cpus, fraction)
        for p in z.pagesets:
            where = f"{path.name} {z.name} cpu{p.cpu}"
            assert p.batch == lim.batch, where
            if cap.kernel.pcp_high_autotune:
                assert lim.high_min is not None and lim.high_max is not None
                assert (p.high_min, p.high_max) == (lim.high_min, lim.high_max), where
                # pcp->high itself is tuned at run time: 0 until first use, then inside
                assert p.high == 0 or lim.high_min <= p.high <= lim.high_max, where
            else:
                assert p.high_min is None and p.high_max is None
                assert p.high == lim.high, where
            checked += 1
    assert checked, f"{path.name}: no pagesets at all"


def test_capture_fraction_snapshots_differ() -> None:
    """Guard against a fraction mix-up: the three boot_fraction files really differ."""
    d = REFERENCE / "debian-6.1-2cpu-hotplug"
    highs = {f: zones_of(d / f"boot_fraction_{f}.zoneinfo.txt")[1].pagesets[0].high
             for f in (0, 8, 100)}
    assert highs == {0: 6915, 8: 14059, 100: 1124}


# --- zone_batchsize ---------------------------------------------------------------------

@pytest.mark.parametrize("ver", ["v5.8", "v5.10", "v5.11", "v5.14", "v6.1", "v6.6", "v6.18",
                                 "v6.19"])
def test_zone_batchsize_large_zone_is_63(ver: str) -> None:
    k = kernel(ver)
    assert pl.zone_batchsize(262144, k) == 63  # 1 GiB
    assert pl.zone_batchsize(6_000_000, k) == 63  # capped at 1 MiB / 4
    assert pl.zone_batchsize(224952, k) == 63
    assert pl.zone_batchsize(163840, k) == 31  # 40 -> rounddown(60) - 1
    assert pl.zone_batchsize(65536, k) == 15
    assert pl.zone_batchsize(32768, k) == 7
    assert pl.zone_batchsize(8192, k) == 1  # step-2 value 2 -> 1
    assert pl.zone_batchsize(12288, k) == 3  # step-2 value 3 -> 3


def test_zone_batchsize_tiny_zone_differs_only_in_6_19() -> None:
    # a DMA zone (3840 pages): 0 up to 6.18, 1 in 6.19; max(1, .) hides it from 5.14 on
    for ver in ("v5.10", "v5.14", "v6.1", "v6.18"):
        assert pl.zone_batchsize(3840, kernel(ver)) == 0, ver
    assert pl.zone_batchsize(3840, kernel("v6.19")) == 1
    assert pl.zone_batchsize(0, kernel("v6.19")) == 1


# --- static limits per generation ----------------------------------------------------------

@pytest.mark.parametrize("ver", ["v5.8", "v5.10", "v5.11", "v5.13"])
def test_5x_default_high_is_six_batches(ver: str) -> None:
    k = kernel(ver)
    assert pl.pcp_high_and_batch(k, 262144, 0, 4) == pl.PcpLimits(high=378, batch=63)
    assert pl.pcp_high_and_batch(k, 10**7, 0, 4) == pl.PcpLimits(high=378, batch=63)
    # DMA-sized zone: batch 0 -> high 0, batch 1: the pcplists never cache
    assert pl.pcp_high_and_batch(k, 3840, 0, 4) == pl.PcpLimits(high=0, batch=1)
    # the low watermark and the CPU count play no part before 5.14
    assert pl.pcp_high_and_batch(k, 262144, 99999, 1) == pl.PcpLimits(high=378, batch=63)


def test_5x_fraction_variant() -> None:
    k = kernel("v5.10")
    # high = managed / f; batch = high / 4, capped at PAGE_SHIFT * 8 = 96
    assert pl.pcp_high_and_batch(k, 262144, 0, 2, fraction=8) == pl.PcpLimits(32768, 96)
    assert pl.pcp_high_and_batch(k, 262144, 0, 2, fraction=1000) == pl.PcpLimits(262, 65)
    assert pl.pcp_high_and_batch(k, 3840, 0, 2, fraction=8) == pl.PcpLimits(480, 96)
    assert pl.pcp_high_and_batch(k, 100, 0, 2, fraction=8) == pl.PcpLimits(12, 3)
    assert pl.pcp_high_and_batch(k, 20, 0, 2, fraction=8) == pl.PcpLimits(2, 1)
    assert pl.pcp_high_and_batch(k, 262144, 0, 2, fraction=8, page_shift=9).batch == 72


@pytest.mark.parametrize("ver", ["v5.10", "v5.14", "v6.1", "v6.19"])
@pytest.mark.parametrize("bad", [-1, 1, 2, 7])
def test_rejected_fractions_raise(ver: str, bad: int) -> None:
    k = kernel(ver)
    name = "percpu_pagelist_high_fraction" if k.zone_highsize else "percpu_pagelist_fraction"
    with pytest.raises(ValueError, match=rf"vm\.{name} = {bad} is rejected"):
        pl.pcp_high_and_batch(k, 262144, 1000, 2, fraction=bad)


@pytest.mark.parametrize("ver", ["v5.10", "v6.1", "v6.19"])
def test_accepted_fractions(ver: str) -> None:
    for ok in (0, 8, 9, 100000):
        pl.pcp_high_and_batch(kernel(ver), 262144, 1000, 2, fraction=ok)


def test_5_14_high_splits_low_watermark_over_cpus() -> None:
    k = kernel("v5.14")
    assert pl.pcp_high_and_batch(k, 224952, 13830, 2) == pl.PcpLimits(6915, 63)
    assert pl.pcp_high_and_batch(k, 224952, 13830, 4) == pl.PcpLimits(3457, 63)
    # a CPU being onlined is not in the node mask yet, so the kernel adds it
    assert pl.pcp_high_and_batch(k, 224952, 13830, 2, cpu_online=1).high == 4610
    # at least 4 * batch
    assert pl.pcp_high_and_batch(k, 224952, 100, 2) == pl.PcpLimits(252, 63)
    assert pl.pcp_high_and_batch(k, 3840, 237, 2) == pl.PcpLimits(118, 1)
    assert pl.pcp_high_and_batch(k, 3840, 0, 2) == pl.PcpLimits(4, 1)
    # with the sysctl: managed / f over the CPUs
    assert pl.pcp_high_and_batch(k, 224952, 13830, 2, fraction=8) == pl.PcpLimits(14059, 63)


def test_memory_only_node_splits_over_online_cpus() -> None:
    k = kernel("v6.1")
    with pytest.raises(ValueError, match="online_cpus"):
        pl.pcp_high_and_batch(k, 262144, 8000, 0)
    assert pl.pcp_high_and_batch(k, 262144, 8000, 0, online_cpus=4).high == 2000


def test_6_7_high_min_and_high_max() -> None:
    k = kernel("v6.7")
    lim = pl.pcp_high_and_batch(k, 772808, 12545, 2)
    assert lim == pl.PcpLimits(high=6272, batch=63, high_min=6272, high_max=48300)
    pinned = pl.pcp_high_and_batch(k, 772808, 12545, 2, fraction=100)
    assert pinned.high_min == pinned.high_max == pinned.high == 3864
    # 6.6 still has a single high
    assert pl.pcp_high_and_batch(kernel("v6.6"), 772808, 12545, 2).high_min is None


def test_boot_pageset_constants() -> None:
    assert (pl.BOOT_PAGESET_HIGH, pl.BOOT_PAGESET_BATCH) == (0, 1)
    assert pl.PCP_BATCH_SCALE_MAX == 5
    # the offline drain chunk seen in the 6.1 traces: batch 1 << scale max
    assert pl.BOOT_PAGESET_BATCH << pl.PCP_BATCH_SCALE_MAX == 32


# --- refill size before 6.7 ----------------------------------------------------------------

def test_nr_pcp_refill() -> None:
    assert pl.nr_pcp_refill(kernel("v5.10"), 63) == 63
    with pytest.raises(ValueError):
        pl.nr_pcp_refill(kernel("v5.10"), 63, order=1)
    k = kernel("v6.1")
    assert pl.nr_pcp_refill(k, 63, 0) == 63
    assert pl.nr_pcp_refill(k, 63, 3) == 7
    assert pl.nr_pcp_refill(k, 63, 9) == 2
    assert pl.nr_pcp_refill(k, 1, 3) == 1  # disabled / small zone: never caches


# --- 5.14-6.6: free_factor --------------------------------------------------------------

def test_scaled_free_doubles_until_it_would_empty_the_list() -> None:
    count, high, batch, ff = 378, 378, 63, 0
    got = []
    for _ in range(5):
        thr = pl.nr_pcp_high_scaled(high, batch, reclaim_active=False)
        assert count >= thr
        r = pl.nr_pcp_free_scaled(count, thr, batch, ff)
        got.append((r[0], r[1]))
        ff = r[1]
    # 63, 126, 252 -> clamped to high - batch = 315; free_factor stops growing at 3
    assert got == [(63, 1), (126, 2), (252, 3), (315, 3), (315, 3)]


def test_scaled_free_cap_of_stable_backports() -> None:
    r = pl.nr_pcp_free_scaled(10**6, 10**6, 63, 5, scale_max=pl.PCP_BATCH_SCALE_MAX)
    assert r == (63 << 5, 5)
    r = pl.nr_pcp_free_scaled(10**6, 10**6, 63, 5)  # mainline: no cap
    assert r == (63 << 5, 6)


def test_scaled_disabled_and_special_cases() -> None:
    # zone_pcp_disable: high 0, batch 1 -> threshold 0, frees exactly one page
    thr = pl.nr_pcp_high_scaled(0, 1, reclaim_active=False)
    assert thr == 0
    assert pl.nr_pcp_free_scaled(1, thr, 1, 0) == (1, 0)
    assert pl.nr_pcp_free_scaled(5, 10, 63, 0)[0] == 1  # high < batch
    assert pl.nr_pcp_high_scaled(6915, 63, reclaim_active=True) == 252
    assert pl.nr_pcp_high_scaled(100, 63, reclaim_active=True) == 100
    assert pl.nr_pcp_high_scaled(6915, 63, reclaim_active=False, free_high=True) == 0
    assert pl.nr_pcp_free_scaled(77, 0, 63, 2, free_high=True) == (77, 2)


# --- 6.7+: auto-tuning -------------------------------------------------------------------

def test_disabled_pcp_free_flushes_exactly_one_page() -> None:
    """high_min = high_max = 0, batch 1 (zone_pcp_disable or a boot pageset)."""
    for pcp_high in (0, 6272):  # a stale displayed high is clamped away
        for count, free_count in ((1, 1), (7, 32), (1000, 0)):
            h = pl.nr_pcp_high(pcp_high, 0, 0, count, free_count, 1, free_high=False,
                               reclaim_active=False, below_high=False)
            assert h == (0, 0)
            assert count >= h[0]
            assert pl.nr_pcp_free(count, free_count, 1, h[0], free_high=False) == 1
    a = pl.nr_pcp_alloc(6272, 0, 0, 0, 3, 1, 0, below_high=False)
    assert a == (1, 0, 3)


def test_nr_pcp_free_high_below_batch_is_one() -> None:
    assert pl.nr_pcp_free(500, 200, 63, 62, free_high=False) == 1
    assert pl.nr_pcp_free(500, 200, 63, 0, free_high=False) == 1


def test_nr_pcp_free_clamps_free_count() -> None:
    assert pl.nr_pcp_free(6300, 10, 63, 6272, free_high=False) == 63
    assert pl.nr_pcp_free(6300, 1000, 63, 6272, free_high=False) == 1000
    assert pl.nr_pcp_free(6300, 10**6, 63, 6272, free_high=False) == 6272 - 63
    # high < 2*batch: the kernel's __clamp tests the upper bound first
    assert pl.nr_pcp_free(100, 50, 63, 100, free_high=False) == 37
    assert pl.nr_pcp_free(100, 10, 63, 100, free_high=False) == 63
    assert pl.nr_pcp_free(3000, 0, 63, 6272, free_high=True) == 63 << 5
    assert pl.nr_pcp_free(40, 0, 63, 6272, free_high=True) == 40


def test_nr_pcp_high_rules() -> None:
    kw = {"free_high": False, "reclaim_active": False, "below_high": False}
    # a fresh pcp (high 0) picks up high_min
    assert pl.nr_pcp_high(0, 6272, 48300, 10, 1, 63, **kw) == (6272, 6272)
    # pinned by the sysctl: no tuning
    assert pl.nr_pcp_high(1000, 3864, 3864, 5000, 900, 63, **kw) == (3864, 3864)
    # full list: this free still flushes at the old high, the next ones get more room
    assert pl.nr_pcp_high(6272, 6272, 48300, 6272, 7000, 63, **kw) == (6272, 7063)
    assert pl.nr_pcp_high(6272, 6272, 48300, 6272, 10**6, 63, **kw) == (6272, 48300)
    # high-order freeing streak: flush now, shrink by batch << 5
    assert pl.nr_pcp_high(8000, 6272, 48300, 10, 0, 63, free_high=True, reclaim_active=False,
                          below_high=False) == (0, 6272)
    assert pl.nr_pcp_high(20000, 6272, 48300, 10, 0, 63, free_high=True,
                          reclaim_active=False, below_high=False) == (0, 17984)
    # reclaim: shrink by what was freed, keep at most 4 batches
    assert pl.nr_pcp_high(20000, 6272, 48300, 10, 500, 63, free_high=False,
                          reclaim_active=True, below_high=False) == (252, 19500)
    # below the high watermark: shrink, and flush down to max(count, high_min)
    assert pl.nr_pcp_high(20000, 6272, 48300, 9000, 10, 63, free_high=False,
                          reclaim_active=False, below_high=True) == (9000, 19937)


def test_nr_pcp_alloc_rules() -> None:
    # order 0: batch << alloc_factor, high grows by it (auto-tuned, not below high)
    a = pl.nr_pcp_alloc(6272, 6272, 48300, 0, 0, 63, 0, below_high=False)
    assert a == (63, 6335, 1)
    a = pl.nr_pcp_alloc(a[1], 6272, 48300, 0, a[2], 63, 0, below_high=False)
    assert a == (126, 6461, 2)
    # alloc_factor stops at PCP_BATCH_SCALE_MAX
    a = pl.nr_pcp_alloc(40000, 6272, 48300, 0, 5, 63, 0, below_high=False)
    assert a == (63 << 5, 42016, 5)
    # limited to high - count - batch (but at least batch)
    a = pl.nr_pcp_alloc(6272, 6272, 6272, 6000, 4, 63, 0, below_high=False)
    assert a == (209, 6272, 4)
    a = pl.nr_pcp_alloc(6272, 6272, 6272, 6250, 4, 63, 0, below_high=False)
    assert a == (63, 6272, 4)
    # higher orders: plain batch, scaled by order, at least 2
    assert pl.nr_pcp_alloc(6272, 6272, 6272, 0, 3, 63, 3, below_high=False)[0] == 7
    assert pl.nr_pcp_alloc(6272, 6272, 6272, 0, 3, 63, 9, below_high=False)[0] == 2
    # below the high watermark high does not grow
    assert pl.nr_pcp_alloc(6272, 6272, 48300, 0, 0, 63, 0, below_high=True)[1] == 6272


def test_decay_pcp_high() -> None:
    d = pl.decay_pcp_high(48000, 6272, 100, 63)
    assert d == pl.PcpDecay(42000, 0, True)
    d = pl.decay_pcp_high(6300, 6272, 6300, 63)
    assert d == pl.PcpDecay(6272, 28, True)
    assert pl.decay_pcp_high(6272, 6272, 10, 63) == pl.PcpDecay(6272, 0, False)
    # draining is bounded: high cannot drop more than batch << 5 below count
    d = pl.decay_pcp_high(48000, 0, 48000, 63)
    assert d.pcp_high == 48000 - (63 << 5) and d.to_drain == 63 << 5


def test_generation_features_used_by_the_formulas() -> None:
    assert kernel("v6.19").zone_highsize is True
    assert kernel("v5.10").zone_highsize is False
    assert kernel("v6.19").zone_batchsize_floor_one is True
    assert kernel("v6.18").zone_batchsize_floor_one is False


def test_free_high_scaled() -> None:
    assert pl.free_high_scaled(kernel("v6.1"), 1, 2) is True
    assert pl.free_high_scaled(kernel("v6.1"), 0, 2) is False  # not in a freeing run
    assert pl.free_high_scaled(kernel("v6.1"), 3, 0) is False  # order 0
    assert pl.free_high_scaled(kernel("v6.1"), 3, 9) is False  # THP order
    assert pl.free_high_scaled(kernel("v5.14"), 3, 2) is False  # not yet


def test_pcp_free_commit() -> None:
    prev = pl.PCPF_PREV_FREE_HIGH_ORDER
    big_cache = pl.PCPF_FREE_HIGH_BATCH
    # first high-order free of a run only sets the flag
    assert pl.pcp_free_commit(kernel("v6.8"), 2, 10, 100, 63, 6272, 0) == \
        (False, prev, 104)
    # second one: 6.8 triggers at free_count >= batch ...
    assert pl.pcp_free_commit(kernel("v6.8"), 2, 10, 100, 63, 6272, prev) == \
        (True, prev, 104)
    # ... 6.16+ needs batch + high_min / 2
    assert pl.pcp_free_commit(kernel("v6.19"), 2, 10, 100, 63, 6272, prev)[0] is False
    assert pl.pcp_free_commit(kernel("v6.19"), 2, 10, 3199, 63, 6272, prev)[0] is True
    # with a large cache slice, only once count reaches a batch
    assert pl.pcp_free_commit(kernel("v6.8"), 2, 10, 100, 63, 0, prev | big_cache) == \
        (False, prev | big_cache, 104)
    assert pl.pcp_free_commit(kernel("v6.8"), 2, 63, 100, 63, 0, prev | big_cache)[0]
    # an order-0 free ends the run; free_count stops growing at batch << 5
    assert pl.pcp_free_commit(kernel("v6.19"), 0, 10, 2016, 63, 0, prev | big_cache) == \
        (False, big_cache, 2016)
