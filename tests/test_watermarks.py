# SPDX-License-Identifier: GPL-2.0-only
"""Watermarks, min_free_kbytes and lowmem_reserve against the real captures.

What the captures allow to check, and how:

* The ``protection:`` line (lowmem_reserve) of every zone of every capture, from the
  managed pages in the same file.
* The min/low/high(/promo) of every zone of every capture taken after the kernel last
  recomputed them (any memory online/offline runs init_per_zone_wmark_min()): the
  recomputation is replayed from the file's managed pages, including the square-root
  default and the THP recommendation that overrides it.
* The captures still carrying the boot-time watermarks (6.1: ``boot``, ``boot_fraction_*``
  and, on the movablecore machine, ``filled`` and ``off1_loaded.before``) cannot be
  replayed from their own managed counts: the kernel computed them at khugepaged's start,
  before the init sections and the initramfs were freed into DMA32, and freeing pages does
  not recompute watermarks in 6.1. For those the test shows that a DMA32 a little smaller
  than the file's reproduces both the min_free_kbytes of info.txt and every watermark.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from pagesim.model import watermarks as wm
from pagesim.model.kernels import Kernel, kernel
from pagesim.procfs.types import ZoneInfo
from pagesim.procfs.zoneinfo import parse_zoneinfo

REFERENCE = Path(__file__).parent / "data" / "reference"
CAPTURE_DIRS = ("debian-6.1-2cpu-hotplug", "debian-6.1-2cpu-movablecore", "host-6.18")
ZONEINFO_FILES = sorted(p for d in CAPTURE_DIRS for p in (REFERENCE / d).glob("*zoneinfo.txt"))


def zones_of(path: Path) -> list[ZoneInfo]:
    return parse_zoneinfo(path.read_text(), str(path)).zones


def kernel_of(d: Path) -> Kernel:
    m = re.search(r"^Linux \S+ (\d+)\.(\d+)", (d / "info.txt").read_text(), re.M)
    assert m, f"{d}/info.txt: no kernel version"
    return kernel(f"v{m.group(1)}.{m.group(2)}")


def sysctl_of(d: Path) -> dict[str, str]:
    text = (d / "info.txt").read_text()
    return dict(re.findall(r"^(?:/proc/sys/vm/|vm\.)(\w+) = (.*)$", text, re.M))


def wzones(zones: list[ZoneInfo]) -> list[wm.WmarkZone]:
    return [wm.WmarkZone.of(z.name, z.managed, z.present) for z in zones]


def printed(zones: list[ZoneInfo]) -> list[wm.Watermarks]:
    return [wm.Watermarks(z.min, z.low, z.high, z.promo) for z in zones]


def as_printed(got: Sequence[wm.Watermarks], zones: list[ZoneInfo]) -> list[wm.Watermarks]:
    """6.1 has WMARK_PROMO but its /proc/zoneinfo does not print it (6.18 does)."""
    return [w if z.promo is not None else wm.Watermarks(w.min, w.low, w.high)
            for w, z in zip(got, zones, strict=True)]


def same_wmarks(a: list[ZoneInfo], b: list[ZoneInfo]) -> bool:
    return [(z.min, z.low, z.high) for z in a] == [(z.min, z.low, z.high) for z in b]


def is_boot_era(path: Path) -> bool:
    """Still the watermarks computed at boot: identical to the boot capture's (host-6.18
    has a single capture and no boot.zoneinfo.txt; it reproduces as it is)."""
    boot = path.parent / "boot.zoneinfo.txt"
    return boot.exists() and same_wmarks(zones_of(path), zones_of(boot))


def test_every_capture_is_found() -> None:
    assert len(ZONEINFO_FILES) >= 65


# --- lowmem_reserve ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ZONEINFO_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_capture_protection(path: Path) -> None:
    k = kernel_of(path.parent)
    zones = zones_of(path)
    ratios = [int(x) for x in sysctl_of(path.parent)["lowmem_reserve_ratio"].split()]
    assert ratios == [wm.DEFAULT_LOWMEM_RESERVE_RATIO[z.name] for z in zones]
    got = wm.lowmem_reserve(k, wzones(zones), ratios)
    assert got == [z.protection for z in zones]


def test_lowmem_reserve_before_5_11_skips_ratio_zero_zones() -> None:
    zones = [wm.WmarkZone.of(n, m) for n, m in
             (("DMA", 3840), ("DMA32", 224952), ("Normal", 0), ("Movable", 262144),
              ("Device", 0))]
    new = wm.lowmem_reserve(kernel("v5.11"), zones)
    old = wm.lowmem_reserve(kernel("v5.10"), zones)
    assert new[0] == [0, 878, 878, 1902, 1902]  # as 6.1 prints it (filled.zoneinfo.txt)
    assert old[0] == [0, 878, 878, 1902, 878]  # Movable (ratio 0) left out of the Device column
    assert new[1] == [0, 0, 0, 1024, 1024]
    assert old[1] == [0, 0, 0, 1024, 0]
    assert new[2:] == old[2:]


# --- min_free_kbytes -----------------------------------------------------------------------

def test_calculate_min_free_kbytes_bounds() -> None:
    k = kernel("v6.1")
    assert wm.calculate_min_free_kbytes(0, k) == 128
    assert wm.calculate_min_free_kbytes(1024, k) == 128
    assert wm.calculate_min_free_kbytes(1 << 20, k) == 4096  # 1 GiB of lowmem
    assert wm.calculate_min_free_kbytes(16 << 20, k) == 16384
    assert wm.calculate_min_free_kbytes(1 << 40, k) == 262144
    with pytest.raises(ValueError):
        wm.calculate_min_free_kbytes(-1, k)


def test_thp_recommendation() -> None:
    # 2 pageblocks + 3 * 3 pageblocks per zone, x 512 pages x 4 kB
    assert wm.recommended_min_free_kbytes(2, 10**6) == 45056
    assert wm.recommended_min_free_kbytes(3, 10**6) == 67584
    # never more than 5 % of lowmem (the 6.1 boot: 45020 kB)
    assert wm.recommended_min_free_kbytes(2, 225100) == 45020
    assert wm.set_recommended_min_free_kbytes(90000, 2, 10**6) == 90000  # only raises
    assert wm.set_recommended_min_free_kbytes(3000, 2, 10**6) == 45056


def test_info_min_free_kbytes_is_the_thp_recommendation() -> None:
    # 6.18: DMA, DMA32, Normal populated, lowmem large -> exactly the recommendation
    assert sysctl_of(REFERENCE / "host-6.18")["min_free_kbytes"] == "67584"
    assert sysctl_of(REFERENCE / "debian-6.1-2cpu-movablecore")["min_free_kbytes"] == "45056"


# --- setup_per_zone_wmarks -------------------------------------------------------------------

def test_host_6_18_watermarks_from_info() -> None:
    """Given min_free_kbytes and watermark_scale_factor from info.txt, every zone of the
    6.18 capture, promo included; the empty ZONE_MOVABLE gets the highmem floor of 32."""
    d = REFERENCE / "host-6.18"
    sysctl = sysctl_of(d)
    zones = zones_of(d / "zoneinfo.txt")
    got = wm.setup_per_zone_wmarks(kernel_of(d), wzones(zones), int(sysctl["min_free_kbytes"]),
                                   int(sysctl["watermark_scale_factor"]))
    assert got == printed(zones)
    assert got[3] == wm.Watermarks(32, 32, 32, 32)  # Movable, 0 managed
    assert got[4] == wm.Watermarks(0, 0, 0, 0)  # Device


@pytest.mark.parametrize("path", [p for p in ZONEINFO_FILES if not is_boot_era(p)],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_capture_watermarks_after_recompute(path: Path) -> None:
    """Replay init_per_zone_wmark_min() with the file's managed pages."""
    d = path.parent
    k = kernel_of(d)
    zones = zones_of(path)
    sysctl = sysctl_of(d)
    wz = wzones(zones)
    # prev_high: the high watermarks before the recompute; they only feed the square-root
    # default, which the THP recommendation overrides (asserted below), so the file's own
    # values stand in for them.
    setup = wm.init_per_zone_wmark_min(
        k, wz, prev_high=[z.high for z in zones],
        watermark_scale_factor=int(sysctl["watermark_scale_factor"]))
    assert as_printed(setup.watermarks, zones) == printed(zones)
    nr_zones = wm.thp_zone_count(wz)
    assert setup.min_free_kbytes == 512 * 11 * 4 * nr_zones
    sqrt_default = wm.calculate_min_free_kbytes(
        wm.nr_free_buffer_pages(wz, [z.high for z in zones]) * 4, k)
    assert sqrt_default < setup.min_free_kbytes


def test_boot_era_captures_are_the_expected_ones() -> None:
    boot_era = sorted(f"{p.parent.name}/{p.name}" for p in ZONEINFO_FILES if is_boot_era(p))
    assert boot_era == sorted(
        [f"debian-6.1-2cpu-hotplug/{n}.zoneinfo.txt"
         for n in ("boot", "boot_fraction_0", "boot_fraction_8", "boot_fraction_100")]
        + [f"debian-6.1-2cpu-movablecore/{n}.zoneinfo.txt"
           for n in ("boot", "boot_fraction_0", "boot_fraction_8", "boot_fraction_100",
                     "filled", "off1_loaded.before")])


@pytest.mark.parametrize("dirname", ["debian-6.1-2cpu-hotplug", "debian-6.1-2cpu-movablecore"])
def test_boot_watermarks_need_the_smaller_boot_time_dma32(dirname: str) -> None:
    d = REFERENCE / dirname
    k = kernel_of(d)
    zones = zones_of(d / "boot.zoneinfo.txt")
    info_mfk = int(sysctl_of(d)["min_free_kbytes"])
    wz = wzones(zones)
    # with the file's own managed counts the watermarks do not come out
    assert as_printed(wm.setup_per_zone_wmarks(k, wz, info_mfk), zones) != printed(zones)
    dma32 = [z.name for z in zones].index("DMA32")
    fits = []
    for managed in range(zones[dma32].managed - 8192, zones[dma32].managed + 1):
        trial = list(wz)
        trial[dma32] = wm.WmarkZone.of("DMA32", managed)
        setup = wm.init_per_zone_wmark_min(k, trial, boot=True)
        if setup.min_free_kbytes == info_mfk and \
                as_printed(setup.watermarks, zones) == printed(zones):
            fits.append(managed)
    assert fits, "no boot-time DMA32 size reproduces the boot watermarks"
    freed_later = zones[dma32].managed - max(fits)
    # the init sections plus the busybox initramfs: a few MiB, never more than 32 MiB
    assert 0 < freed_later < 8192


def test_promo_only_since_6_0() -> None:
    zones = [wm.WmarkZone.of("DMA32", 224952)]
    assert wm.setup_per_zone_wmarks(kernel("v5.19"), zones, 45056)[0].promo is None
    w = wm.setup_per_zone_wmarks(kernel("v6.0"), zones, 45056)[0]
    assert w == wm.Watermarks(11264, 14080, 16896, 19712)
    # 5.x high = min + 2 * step equals 6.x high = low + step
    assert wm.setup_per_zone_wmarks(kernel("v5.10"), zones, 45056)[0] == \
        wm.Watermarks(11264, 14080, 16896, None)


def test_zone_movable_is_lowmem_until_6_6() -> None:
    zones = [wm.WmarkZone.of(n, m) for n, m in
             (("DMA", 3840), ("DMA32", 224952), ("Normal", 0), ("Movable", 262144),
              ("Device", 0))]
    # 6.1 (filled.zoneinfo.txt): Movable takes a proportional share of min
    old = wm.setup_per_zone_wmarks(kernel("v6.5"), zones, 45056)
    assert [(w.min, w.low, w.high) for w in old[:2]] == [(88, 110, 132), (5161, 6451, 7741)]
    assert (old[3].min, old[3].low) == (6014, 7517)
    # 6.6+: Movable gets min 128 and DMA32 keeps the whole reserve
    new = wm.setup_per_zone_wmarks(kernel("v6.6"), zones, 45056)
    assert new[3].min == 128
    assert new[1].min == 11074
    # but its kswapd distance is still a quarter of its (large) proportional share
    assert new[3].low - new[3].min == (11264 * 262144 // 228792) >> 2


def test_hotplug_recompute_keeps_thp_value_only_since_5_10() -> None:
    zones = [wm.WmarkZone.of(n, m) for n, m in
             (("DMA", 3840), ("DMA32", 224952), ("Movable", 32768))]
    prev = [284, 16596, 0]
    assert wm.init_per_zone_wmark_min(kernel("v5.10"), zones,
                                      prev_high=prev).min_free_kbytes == 45056
    # 5.9: the square root of the GFP_USER pages above their high watermarks
    assert wm.init_per_zone_wmark_min(kernel("v5.9"), zones,
                                      prev_high=prev).min_free_kbytes == 3682
    assert wm.init_per_zone_wmark_min(kernel("v6.1"), zones, prev_high=prev,
                                      thp=False).min_free_kbytes == 3682
    # a user value above the square root survives, the THP recommendation still raises it
    assert wm.init_per_zone_wmark_min(kernel("v5.9"), zones, prev_high=prev,
                                      min_free_kbytes=8000,
                                      user_min_free_kbytes=8000).min_free_kbytes == 8000


def test_setup_rejects_no_lowmem() -> None:
    with pytest.raises(ValueError, match="lowmem"):
        wm.setup_per_zone_wmarks(kernel("v6.6"), [wm.WmarkZone.of("Movable", 1000)], 4096)
