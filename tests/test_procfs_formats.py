# SPDX-License-Identifier: GPL-2.0-only
"""The /proc text formats against real captures: round trips, values, errors, layouts.

The captures under tests/data/reference are the ground truth: every one must come back
byte for byte, because the golden tests of the model compare rendered text. The error
tests pin the line number as well as the message, since "path:line" is what a user
fixing a hand-edited file acts on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pagesim.model.kernels import Kernel, kernel
from pagesim.procfs.buddyinfo import parse_buddyinfo, render_buddyinfo
from pagesim.procfs.layout import (
    DISTRO_CONFIG,
    SNAPSHOTS,
    BuildConfig,
    ZoneinfoLayout,
    migratetype_names,
    zoneinfo_layout,
)
from pagesim.procfs.pagetypeinfo import parse_pagetypeinfo, render_pagetypeinfo
from pagesim.procfs.types import (
    PagesetInfo,
    Pagetypeinfo,
    PagetypeinfoZone,
    ProcFormatError,
    Zoneinfo,
)
from pagesim.procfs.zoneinfo import parse_zoneinfo, render_zoneinfo

REF = Path(__file__).parent / "data" / "reference"
ZONEINFO = sorted(REF.glob("*/*zoneinfo.txt"))
BUDDYINFO = sorted(REF.glob("*/*buddyinfo.txt"))
PAGETYPEINFO = sorted(REF.glob("*/*pagetypeinfo.txt"))
HOST618 = REF / "host-6.18"
DEB61 = REF / "debian-6.1-2cpu-hotplug"


def _ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]


def _text(path: Path) -> str:
    return path.read_text()


# --------------------------------------------------------------------------------------
# (a) round trips


def test_captures_exist() -> None:
    assert len(ZONEINFO) > 50 and len(BUDDYINFO) > 50 and len(PAGETYPEINFO) > 50


@pytest.mark.parametrize("path", ZONEINFO, ids=_ids(ZONEINFO))
def test_zoneinfo_round_trip(path: Path) -> None:
    text = _text(path)
    assert render_zoneinfo(parse_zoneinfo(text, str(path))) == text


@pytest.mark.parametrize("path", BUDDYINFO, ids=_ids(BUDDYINFO))
def test_buddyinfo_round_trip(path: Path) -> None:
    text = _text(path)
    assert render_buddyinfo(parse_buddyinfo(text, str(path))) == text


@pytest.mark.parametrize("path", PAGETYPEINFO, ids=_ids(PAGETYPEINFO))
def test_pagetypeinfo_round_trip(path: Path) -> None:
    text = _text(path)
    assert render_pagetypeinfo(parse_pagetypeinfo(text, str(path))) == text


# A 5.10/5.11 zoneinfo (zoneinfo_show_print of those releases): no boost, no cma, narrow
# pageset labels. Written from the format, values invented.
ZONEINFO_510 = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 5
      nr_active_anon 6
  pages free     3968
        min      5
        low      8
        high     11
        spanned  4095
        present  3998
        managed  3976
        protection: (0, 1882, 1882, 1882, 1882)
      nr_free_pages 3968
      nr_zone_inactive_anon 0
      numa_hit     1
  pagesets
    cpu: 0
              count: 0
              high:  0
              batch: 1
  vm stats threshold: 6
    cpu: 1
              count: 0
              high:  0
              batch: 1
  vm stats threshold: 6
  node_unreclaimable:  0
  start_pfn:           1
Node 0, zone    DMA32
  pages free     0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        protection: (0, 0, 0, 0, 0)
"""


def test_zoneinfo_510_layout() -> None:
    z = parse_zoneinfo(ZONEINFO_510)
    dma, dma32 = z.zones
    assert dma.boost is None and dma.cma is None and dma.promo is None
    assert dma.pagesets[1] == PagesetInfo(cpu=1, count=0, high=0, batch=1, vm_stats_threshold=6)
    assert dma.per_node_stats == [("nr_inactive_anon", 5), ("nr_active_anon", 6)]
    assert not dma32.populated and dma32.stats == [] and dma32.start_pfn is None
    assert render_zoneinfo(z) == ZONEINFO_510


def test_zoneinfo_619_trailer_round_trip() -> None:
    """6.19 adds reserved_highatomic/free_highatomic; no capture has them yet."""
    z = parse_zoneinfo(_text(HOST618 / "zoneinfo.txt"))
    for zone in z.zones:
        if zone.populated:
            zone.reserved_highatomic, zone.free_highatomic = 1024, 3
    text = render_zoneinfo(z)
    assert "  reserved_highatomic: 1024\n  free_highatomic:     3\n" in text
    again = parse_zoneinfo(text)
    assert again == z
    assert render_zoneinfo(again) == text


def test_zoneinfo_without_smp_threshold() -> None:
    z = parse_zoneinfo(ZONEINFO_510)
    for p in z.zones[0].pagesets:
        p.vm_stats_threshold = None
    text = render_zoneinfo(z)
    assert "vm stats threshold" not in text
    assert parse_zoneinfo(text) == z


def test_zoneinfo_render_rejects_half_of_high_min_max() -> None:
    z = parse_zoneinfo(ZONEINFO_510)
    z.zones[0].pagesets[0].high_min = 5
    with pytest.raises(ValueError, match="high_min and high_max"):
        render_zoneinfo(z)


def _two_nodes(text: str, old: str, new: str) -> str:
    return text + text.replace(old, new)


def test_two_node_round_trips() -> None:
    zi = _two_nodes(_text(HOST618 / "zoneinfo.txt"), "Node 0,", "Node 1,")
    z = parse_zoneinfo(zi)
    assert [zone.node for zone in z.zones] == [0] * 5 + [1] * 5
    assert render_zoneinfo(z) == zi
    bi = _two_nodes(_text(HOST618 / "buddyinfo.txt"), "Node 0,", "Node 1,")
    assert render_buddyinfo(parse_buddyinfo(bi)) == bi
    pti = _text(HOST618 / "pagetypeinfo.txt")
    pti2 = pti + pti.replace("Node    0,", "Node    1,").replace("Node 0,", "Node 1,")
    p = parse_pagetypeinfo(pti2)
    assert [(z.node, z.name) for z in p.zones][2:4] == [(0, "Normal"), (1, "DMA")]
    assert render_pagetypeinfo(p) == pti2


def test_pagetypeinfo_capped_count() -> None:
    text = _text(HOST618 / "pagetypeinfo.txt")
    line = "Node    0, zone    DMA32, type      Movable      2      3      0      2      3" \
           "      2      1      4      4      2    751 "
    assert line in text
    capped_text = text.replace(line, line[:-7] + ">100000 ")
    p = parse_pagetypeinfo(capped_text)
    dma32 = p.zones[1]
    assert dma32.free["Movable"][10] == 100001
    assert dma32.capped == {("Movable", 10)}
    assert render_pagetypeinfo(p) == capped_text
    # a model count at or above the cap prints as the kernel would
    dma32.capped.clear()
    dma32.free["Movable"][10] = 250000
    assert render_pagetypeinfo(p) == capped_text


def test_pagetypeinfo_cma_column_round_trip() -> None:
    mtypes = list(migratetype_names(BuildConfig(cma=True)))
    assert mtypes == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"]
    p = Pagetypeinfo(
        pageblock_order=9, pages_per_block=512, nr_orders=11, migratetypes=mtypes,
        zones=[PagetypeinfoZone(
            node=0, name="Normal",
            free={m: [i] * 11 for i, m in enumerate(mtypes)},
            blocks={m: 10 * i for i, m in enumerate(mtypes)})],
    )
    text = render_pagetypeinfo(p)
    assert "         CMA      Isolate \n" in text
    assert "type          CMA      4      4" in text
    assert parse_pagetypeinfo(text) == p


# --------------------------------------------------------------------------------------
# (b) values


def test_zoneinfo_values_618() -> None:
    z = parse_zoneinfo(_text(HOST618 / "zoneinfo.txt"))
    assert [zone.name for zone in z.zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma, dma32, normal, movable, _ = z.zones
    assert dma.per_node_stats is not None and dma32.per_node_stats is None
    assert dict(dma.per_node_stats)["nr_file_pages"] == 282038
    assert (dma32.managed, dma32.present, dma32.spanned) == (772808, 782336, 1044480)
    assert (dma32.boost, dma32.min, dma32.low, dma32.high, dma32.promo) == (
        0, 10036, 12545, 15054, 17563)
    assert dma32.cma == 0 and dma32.protection == [0, 0, 2048, 2048, 2048]
    assert dma32.stat("nr_free_pages_blocks") == 770560
    assert dma32.stat("numa_local") == 1 and dma32.stat("nr_bounce") is None
    assert dma32.pagesets[0] == PagesetInfo(
        cpu=0, count=63, high=6272, batch=63, high_min=6272, high_max=48300,
        vm_stats_threshold=24)
    assert normal.pagesets[1].count == 4122 and normal.start_pfn == 1048576
    assert normal.node_unreclaimable == 0 and normal.reserved_highatomic is None
    assert not movable.populated and movable.promo == 32 and movable.pagesets == []


def test_zoneinfo_values_61() -> None:
    z = parse_zoneinfo(_text(DEB61 / "boot.zoneinfo.txt"))
    dma, dma32, normal, _, _ = z.zones
    assert dma32.pagesets[0] == PagesetInfo(
        cpu=0, count=2269, high=6915, batch=63, vm_stats_threshold=16)
    assert dma32.pagesets[1].count == 375
    assert dma32.boost == 0 and dma32.promo is None and dma32.managed == 224952
    assert dma.pagesets[0].high == 118 and dma.pagesets[0].batch == 1
    assert dma32.stat("nr_bounce") == 0
    assert not normal.populated


def test_buddyinfo_values() -> None:
    b = parse_buddyinfo(_text(HOST618 / "buddyinfo.txt"))
    assert [(z.node, z.name) for z in b.zones] == [(0, "DMA"), (0, "DMA32"), (0, "Normal")]
    assert b.zones[2].nr_free == [832, 948, 726, 573, 388, 520, 318, 174, 121, 47, 62]
    b61 = parse_buddyinfo(_text(DEB61 / "online_all.buddyinfo.txt"))
    assert b61.zones[2].name == "Movable" and b61.zones[2].nr_free[10] == 255


def test_pagetypeinfo_values() -> None:
    p = parse_pagetypeinfo(_text(HOST618 / "pagetypeinfo.txt"))
    assert (p.pageblock_order, p.pages_per_block, p.nr_orders) == (9, 512, 11)
    assert p.migratetypes == list(migratetype_names(DISTRO_CONFIG))
    dma, dma32, normal = p.zones
    assert normal.blocks == {"Unmovable": 58, "Movable": 914, "Reclaimable": 52,
                             "HighAtomic": 0, "Isolate": 0}
    assert dma32.blocks["Movable"] == 1526 and dma.blocks["Movable"] == 7
    assert dma32.free["Movable"][10] == 751 and dma32.capped == set()
    # this capture was read at one instant for DMA32: buddyinfo is the sum over types
    b = parse_buddyinfo(_text(HOST618 / "buddyinfo.txt"))
    summed = [sum(col) for col in zip(*dma32.free.values(), strict=True)]
    assert summed == b.zones[1].nr_free
    p61 = parse_pagetypeinfo(_text(DEB61 / "online_all.pagetypeinfo.txt"))
    assert p61.zones[2].name == "Movable" and p61.zones[2].blocks["Movable"] == 512
    assert p61.zones[1].blocks == {"Unmovable": 105, "Movable": 385, "Reclaimable": 14,
                                   "HighAtomic": 0, "Isolate": 0}


# --------------------------------------------------------------------------------------
# (c) errors: every one is "path:line: problem", with the line a user would look at


def _line_of(text: str, needle: str, after: int = 0) -> int:
    """1-based number of the first line equal to ``needle`` after line ``after``."""
    lines = text.split("\n")
    for i in range(after, len(lines)):
        if lines[i] == needle:
            return i + 1
    raise AssertionError(f"{needle!r} not in text")


def _cut_after(text: str, lineno: int) -> str:
    """The first ``lineno`` lines, each with its newline."""
    return "".join(line + "\n" for line in text.split("\n")[:lineno])


def _replace_line(text: str, lineno: int, new: str | None) -> str:
    lines = text.split("\n")
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    return "\n".join(lines)


def _insert_line(text: str, before: int, new: str) -> str:
    lines = text.split("\n")
    lines.insert(before - 1, new)
    return "\n".join(lines)


def _expect_error(
    parse: Callable[[str, str], Any], text: str, line: int, problem: str
) -> ProcFormatError:
    with pytest.raises(ProcFormatError) as info:
        parse(text, "cap.txt")
    err = info.value
    assert (err.path, err.line) == ("cap.txt", line), str(err)
    assert str(err) == f"cap.txt:{line}: {err.problem}"
    assert problem in err.problem, str(err)
    return err


ZI618 = _text(HOST618 / "zoneinfo.txt")
DMA32_AT = _line_of(ZI618, "Node 0, zone    DMA32")


@pytest.mark.parametrize("parse", [parse_zoneinfo, parse_buddyinfo, parse_pagetypeinfo])
def test_empty_file(parse: Callable[[str, str], Any]) -> None:
    _expect_error(parse, "", 1, "empty file")


@pytest.mark.parametrize("parse", [parse_zoneinfo, parse_buddyinfo, parse_pagetypeinfo])
def test_cut_inside_a_line(parse: Callable[[str, str], Any]) -> None:
    text = {parse_zoneinfo: ZI618,
            parse_buddyinfo: _text(HOST618 / "buddyinfo.txt"),
            parse_pagetypeinfo: _text(HOST618 / "pagetypeinfo.txt")}[parse]
    cut = text[: len(text) // 2]
    _expect_error(parse, cut, cut.count("\n") + 1, "last line has no newline")


def test_zoneinfo_cut_in_the_middle_of_a_zone() -> None:
    at = _line_of(ZI618, "        min      10036")
    _expect_error(parse_zoneinfo, _cut_after(ZI618, at), at + 1,
                  "unexpected end of file: expected the 'low' line")


def test_zoneinfo_cut_in_the_middle_of_a_pageset() -> None:
    at = _line_of(ZI618, "              batch:    63", DMA32_AT)
    _expect_error(parse_zoneinfo, _cut_after(ZI618, at), at + 1,
                  "unexpected end of file: expected the 'high_min:' line")


def test_zoneinfo_cut_before_the_trailer() -> None:
    at = _line_of(ZI618, "  vm stats threshold: 24", DMA32_AT + 40)
    _expect_error(parse_zoneinfo, _cut_after(ZI618, at), at + 1,
                  "expected the 'node_unreclaimable:' line")


def test_zoneinfo_cut_after_protection_of_a_populated_zone() -> None:
    at = _line_of(ZI618, "        protection: (0, 0, 2048, 2048, 2048)")
    _expect_error(parse_zoneinfo, _cut_after(ZI618, at), at + 1,
                  "a zone with present pages continues with its stats")


def test_zoneinfo_cut_before_an_optional_trailer_line() -> None:
    z = parse_zoneinfo(ZI618)
    for zone in z.zones:
        if zone.populated:
            zone.reserved_highatomic, zone.free_highatomic = 0, 0
    text = render_zoneinfo(z)
    last = _line_of(text, "  start_pfn:           1048576")
    _expect_error(parse_zoneinfo, _cut_after(text, last), last + 1,
                  "expected the 'reserved_highatomic:' line (the zones above have it)")


def test_zoneinfo_missing_optional_line_in_a_later_zone() -> None:
    boost = _line_of(ZI618, "        boost    0", DMA32_AT)
    _expect_error(parse_zoneinfo, _replace_line(ZI618, boost, None), boost,
                  "expected the 'boost' line (the zones above have it)")


def test_zoneinfo_optional_line_the_zones_above_lack() -> None:
    text = _text(DEB61 / "boot.zoneinfo.txt")
    high = _line_of(text, "        high     16596")
    _expect_error(parse_zoneinfo, _insert_line(text, high + 1, "        promo    1"),
                  high + 1, "unexpected 'promo' line: the zones above have none")


def test_zoneinfo_non_numeric_values() -> None:
    at = _line_of(ZI618, "        managed  772808")
    _expect_error(parse_zoneinfo, _replace_line(ZI618, at, "        managed  77x808"), at,
                  "managed: expected an unsigned number, got '77x808'")
    at = _line_of(ZI618, "      nr_free_pages 772745")
    _expect_error(parse_zoneinfo, _replace_line(ZI618, at, "      nr_free_pages lots"), at,
                  "nr_free_pages: expected an unsigned number, got 'lots'")
    at = _line_of(ZI618, "              high_max: 48300")
    _expect_error(parse_zoneinfo, _replace_line(ZI618, at, "              high_max: 4e4"), at,
                  "high_max: expected a number, got '4e4'")
    at = _line_of(ZI618, "        protection: (0, 3018, 5066, 5066, 5066)")
    _expect_error(parse_zoneinfo,
                  _replace_line(ZI618, at, "        protection: (0, 3018, x, 5066, 5066)"), at,
                  "protection: expected a number, got 'x'")


def test_zoneinfo_unknown_lines() -> None:
    at = _line_of(ZI618, "      nr_mlock     0", DMA32_AT)
    _expect_error(parse_zoneinfo, _insert_line(ZI618, at, "  something else"), at,
                  "unexpected line '  something else': expected a zone stat or 'pagesets'")
    at = _line_of(ZI618, "        low      12545")
    _expect_error(parse_zoneinfo, _insert_line(ZI618, at, "        lower    1"), at,
                  "unexpected line '        lower    1': expected 'low'")
    _expect_error(parse_zoneinfo, "hello\n", 1, "expected a zone header")
    at = _line_of(ZI618, "  start_pfn:           1")
    _expect_error(parse_zoneinfo, _insert_line(ZI618, at + 1, "  extra: 1"), at + 1,
                  "unexpected line '  extra: 1': expected a zone header")
    text = _text(DEB61 / "boot.zoneinfo.txt")
    at = _line_of(text, "Node 0, zone   Normal")
    prot = at + 10
    _expect_error(parse_zoneinfo, _insert_line(text, prot + 1, "      nr_free_pages 0"),
                  prot + 1, "a zone with no present pages ends at 'protection:'")


def test_zoneinfo_padding_must_match() -> None:
    at = _line_of(ZI618, "      nr_mapped    2737")
    _expect_error(parse_zoneinfo, _replace_line(ZI618, at, "      nr_mapped 2737"), at,
                  "line does not match the kernel's format")
    _expect_error(parse_zoneinfo, _replace_line(ZI618, 1, "Node 0, zone DMA"), 1,
                  "line does not match the kernel's format")


BI618 = _text(HOST618 / "buddyinfo.txt")


def test_buddyinfo_errors() -> None:
    line2 = BI618.split("\n")[1]
    _expect_error(parse_buddyinfo, _replace_line(BI618, 2, line2[:-7]), 2,
                  "expected 11 orders, got 10 columns")
    _expect_error(parse_buddyinfo, _replace_line(BI618, 3, line2.replace("751", "7z1")), 3,
                  "order 10: expected an unsigned number, got '7z1'")
    _expect_error(parse_buddyinfo, _insert_line(BI618, 2, "Zone DMA 1 2 3"), 2,
                  "unexpected line 'Zone DMA 1 2 3'")
    _expect_error(parse_buddyinfo, _replace_line(BI618, 1, BI618.split("\n")[0] + " "), 1,
                  "line does not match the kernel's format")
    # another column count can be asked for, or taken from the first line
    short = "".join(line[:-7] + "\n" for line in BI618.splitlines())
    assert parse_buddyinfo(short, nr_orders=None).zones[0].nr_free[-1] == 1
    assert len(parse_buddyinfo(short, nr_orders=10).zones) == 3


PT618 = _text(HOST618 / "pagetypeinfo.txt")


def test_pagetypeinfo_wrong_column_counts() -> None:
    at = _line_of(PT618, "Node    0, zone    DMA32, type  Reclaimable      0      0      0"
                  "      0      0      0      0      0      0      0      0 ")
    line = PT618.split("\n")[at - 1]
    _expect_error(parse_pagetypeinfo, _replace_line(PT618, at, line + "     0 "), at,
                  "expected 11 orders, got 12 columns")
    at = _line_of(PT618, "Node 0, zone   Normal           58          914           52"
                  "            0            0 ")
    line = PT618.split("\n")[at - 1]
    _expect_error(parse_pagetypeinfo, _replace_line(PT618, at, line[:-13]), at,
                  "expected 5 migratetypes, got 4 columns")


def test_pagetypeinfo_errors() -> None:
    at = _line_of(PT618, "Pages per block:  512")
    _expect_error(parse_pagetypeinfo, _replace_line(PT618, at, "Pages per block:  5l2"), at,
                  "pages per block: expected an unsigned number, got '5l2'")
    at = _line_of(PT618, "Node 0, zone    DMA32            2         1526            0"
                  "            0            0 ")
    _expect_error(parse_pagetypeinfo,
                  _replace_line(PT618, at, PT618.split("\n")[at - 1].replace("1526", "15x6")),
                  at, "Movable: expected an unsigned number, got '15x6'")
    _expect_error(parse_pagetypeinfo, _insert_line(PT618, 5, "garbage"), 5,
                  "unexpected line 'garbage'")
    # a zone cut short: its lines stop after three of five migratetypes
    at = _line_of(PT618, "Node    0, zone    DMA32, type  Reclaimable      0      0      0"
                  "      0      0      0      0      0      0      0      0 ")
    _expect_error(parse_pagetypeinfo, _cut_after(PT618, at), at + 1,
                  "zone DMA32 lists 3 migratetypes, expected 5 ('HighAtomic' next)")
    # the file cut in the block table
    at = _line_of(PT618, "Node 0, zone    DMA32            2         1526            0"
                  "            0            0 ")
    _expect_error(parse_pagetypeinfo, _cut_after(PT618, at), at + 1,
                  "unexpected end of file: expected the block counts of zone Normal")
    # migratetypes out of order in a later zone
    first = _line_of(PT618, "Node    0, zone    DMA32, type    Unmovable      1      0      0"
                     "      0      0      0      1      1      1      1      0 ")
    lines = PT618.split("\n")
    lines[first - 1], lines[first] = lines[first], lines[first - 1]
    _expect_error(parse_pagetypeinfo, "\n".join(lines), first,
                  "expected 'Unmovable' in zone DMA32, got 'Movable'")


def test_pagetypeinfo_rejects_mixed_blocks_table() -> None:
    mixed = ("\nNumber of mixed blocks     Unmovable      Movable  Reclaimable   HighAtomic"
             "      Isolate \nNode 0, zone      DMA            0            0            0"
             "            0            0 \n")
    text = PT618 + mixed
    at = PT618.count("\n") + 2
    _expect_error(parse_pagetypeinfo, text, at,
                  "the page_owner 'Number of mixed blocks' table is not supported")


# --------------------------------------------------------------------------------------
# (d) layouts


def _from_layout(cap: Zoneinfo, layout: ZoneinfoLayout) -> Zoneinfo:
    """Rebuild a capture zone by zone from the layout's lists, taking values by name.

    Render of the result equals the capture only if the layout has exactly the capture's
    names, in the capture's order, and the same optional lines.
    """
    zones = []
    assert [z.name for z in cap.zones] == list(layout.zone_names)
    for z in cap.zones:
        per_node = None
        if z.per_node_stats is not None:
            values = dict(z.per_node_stats)
            per_node = [(name, values.get(name, -1)) for name in layout.node_stats]
        stats_by_name = dict(z.stats)
        assert len(z.protection) == len(layout.zone_names)
        zones.append(dataclasses.replace(
            z,
            per_node_stats=per_node,
            boost=z.boost if layout.boost else None,
            promo=z.promo if layout.promo else None,
            cma=z.cma if layout.cma else None,
            stats=[(n, stats_by_name.get(n, -1)) for n in layout.stats] if z.populated else [],
            pagesets=[dataclasses.replace(
                p,
                high_min=p.high_min if layout.pageset_high_min_max else None,
                high_max=p.high_max if layout.pageset_high_min_max else None,
                vm_stats_threshold=p.vm_stats_threshold if layout.vm_stats_threshold else None)
                for p in z.pagesets],
            reserved_highatomic=0 if "reserved_highatomic" in layout.trailer else None,
            free_highatomic=0 if "free_highatomic" in layout.trailer else None,
        ))
    return Zoneinfo(zones=zones)


@pytest.mark.parametrize(("version", "path"), [
    ("v6.1", DEB61 / "boot.zoneinfo.txt"),
    ("v6.1", REF / "debian-6.1-2cpu-movablecore" / "final.zoneinfo.txt"),
    ("v6.18", HOST618 / "zoneinfo.txt"),
])
def test_layout_matches_capture(version: str, path: Path) -> None:
    layout = zoneinfo_layout(kernel(version))
    assert layout.exact and layout.snapshot == kernel(version).version
    text = _text(path)
    cap = parse_zoneinfo(text)
    first = cap.zones[0]
    assert first.per_node_stats is not None
    assert tuple(n for n, _ in first.per_node_stats) == layout.node_stats
    for z in cap.zones:
        if z.populated:
            assert tuple(n for n, _ in z.stats) == layout.stats
            assert all((p.high_min is not None) == layout.pageset_high_min_max
                       for p in z.pagesets)
    assert render_zoneinfo(_from_layout(cap, layout)) == text


def test_layout_flags_by_generation() -> None:
    l58 = zoneinfo_layout("v5.8")
    assert "nr_kernel_stack" in l58.zone_stats and "workingset_refault" in l58.node_stats
    l510 = zoneinfo_layout("v5.10")
    assert (l510.boost, l510.cma, l510.promo, l510.pageset_high_min_max) == (
        False, False, False, False)
    assert "nr_page_table_pages" in l510.zone_stats and "nr_swapcached" not in l510.node_stats
    assert l510.trailer == ("node_unreclaimable", "start_pfn")
    l511 = zoneinfo_layout("v5.11")
    assert "nr_page_table_pages" in l511.node_stats
    assert "nr_page_table_pages" not in l511.zone_stats
    assert zoneinfo_layout("v5.12").cma and not zoneinfo_layout("v5.12").boost
    l516 = zoneinfo_layout("v5.16")
    assert not l516.exact and l516.snapshot == (5, 15)
    assert zoneinfo_layout("v6.0").boost
    l607 = zoneinfo_layout("v6.7")
    assert l607.snapshot == (6, 6) and not l607.pageset_high_min_max
    assert kernel("v6.7").pcp_high_autotune  # tuned in 6.7, printed only from 6.13
    assert not zoneinfo_layout("v6.11").promo and zoneinfo_layout("v6.12").promo
    assert zoneinfo_layout("v6.13").pageset_high_min_max
    assert not zoneinfo_layout("v6.12").pageset_high_min_max
    l619 = zoneinfo_layout("v6.19")
    assert l619.trailer[2:] == ("reserved_highatomic", "free_highatomic")
    assert l619.node_stats == zoneinfo_layout("v6.18").node_stats
    assert l619.zone_stats[:2] == ("nr_free_pages", "nr_free_pages_blocks")
    assert "nr_bounce" not in l619.zone_stats and "nr_bounce" in zoneinfo_layout("v6.13").zone_stats


def test_layout_config() -> None:
    bare = BuildConfig(numa=False, smp=False, swap=False, zone_device=False,
                       unaccepted_memory=True)
    lay = zoneinfo_layout("v6.19", bare)
    assert lay.numa_stats == () and not lay.vm_stats_threshold
    assert "nr_swapcached" not in lay.node_stats and "nr_unaccepted" in lay.zone_stats
    assert lay.zone_names == ("DMA", "DMA32", "Normal", "Movable")
    assert "nr_file_hugepages" in zoneinfo_layout("v6.1").node_stats_in_thp_units
    assert zoneinfo_layout("v5.11").node_stats_in_thp_units == ()
    assert zoneinfo_layout("v6.1", BuildConfig(transparent_hugepage=False)) \
        .node_stats_in_thp_units == ()
    assert "nr_unaccepted" not in zoneinfo_layout("v6.1", bare).zone_stats
    assert migratetype_names(BuildConfig(memory_isolation=False))[-1] == "HighAtomic"


def test_snapshots_are_ordered_and_variants_follow_their_base() -> None:
    versions = [s.version for s in SNAPSHOTS]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    for s in SNAPSHOTS:
        assert zoneinfo_layout(f"v{s.version[0]}.{s.version[1]}").exact
    variant = Kernel("v5.11-test", (5, 11), (("zone_pcp_disable", False),))
    assert zoneinfo_layout(variant) == dataclasses.replace(
        zoneinfo_layout("v5.11"), version=(5, 11))
