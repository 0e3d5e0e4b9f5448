# SPDX-License-Identifier: GPL-2.0-only
"""Geometries, zone layouts and the boot that frees all managed memory.

Impossible geometries and zone layouts are refused with an error naming the parameter
or zone at fault. Boot frees each run of managed pages as its canonical decomposition
into aligned blocks, straight onto the free lists (pagesim.model.build); that shortcut
must leave exactly the state that freeing the memory through the allocator leaves: page
by page through ``__free_pages_ok`` or ``free_one_page`` (as ``__free_pages_core``
does: refcount to 0, then free with FPI_TO_TAIL), in aligned chunks as
``memblock_free_all`` does, or page by page in any order (same blocks, list order aside).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pagesim.model import page_alloc as pa
from pagesim.model.build import (
    LayoutError,
    aligned_blocks,
    build_machine,
    managed_runs,
    simple_machine,
)
from pagesim.model.geometry import X86_64, Geometry, GeometryError, tiny
from pagesim.model.invariants import check_invariants
from pagesim.model.mmzone import (
    FPI_TO_TAIL,
    MIGRATE_MOVABLE,
    MIGRATE_TYPES,
    Machine,
    PG_hole,
    PG_reserved,
    ZoneLayout,
)
from pagesim.model.page_alloc import free_list_pfns, free_one_page
from pagesim.runtime.sequential import call, step_through

free_pages_ok = pa.__free_pages_ok

KERNELS = ("v5.10", "v5.14", "v6.1", "v6.10", "v6.19")


# ---------------------------------------------------------------------------------------
# geometry


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"page_shift": 8}, "page_shift"),
    ({"page_shift": 17}, "page_shift"),
    ({"nr_orders": 0}, "nr_orders"),
    ({"nr_orders": 21}, "nr_orders"),
    ({"pageblock_order": 11}, "pageblock_order"),
    ({"pageblock_order": -1}, "pageblock_order"),
    ({"nr_orders": 4, "pageblock_order": 4, "section_order": 5}, "pageblock_order"),
    ({"section_order": 9}, "section_order"),
    ({"nr_orders": 5, "pageblock_order": 2, "section_order": 3}, "section_order"),
    ({"thp_order": 11}, "thp_order"),
    ({"thp_order": -1}, "thp_order"),
])
def test_impossible_geometry_names_the_parameter(kwargs: dict[str, int], param: str) -> None:
    with pytest.raises(GeometryError) as exc:
        Geometry(**kwargs)
    assert str(exc.value).startswith(param), str(exc.value)


@pytest.mark.parametrize(("args", "param"), [
    ((3, 3, 3), "pageblock_order"),  # pageblock of 8 pages, largest block 4
    ((2, 4, 2), "section_order"),  # section of 4 pages, largest block 8
])
def test_impossible_tiny_geometry(args: tuple[int, int, int], param: str) -> None:
    with pytest.raises(GeometryError, match=f"^{param}"):
        tiny(*args)


def test_geometry_sizes() -> None:
    g = X86_64
    assert (g.max_order, g.pageblock_nr_pages, g.max_order_nr_pages) == (10, 512, 1024)
    assert (g.pages_per_section, g.page_size) == (32768, 4096)
    t = tiny(2, 4, 4)
    assert (t.max_order, t.pageblock_nr_pages, t.pages_per_section, t.thp_order) == (
        3, 4, 16, 0)
    # the smallest possible: one order, pageblocks of one page
    assert Geometry(nr_orders=1, pageblock_order=0, section_order=0, thp_order=0)


def test_geometry_error_is_a_value_error() -> None:
    assert issubclass(GeometryError, ValueError)


# ---------------------------------------------------------------------------------------
# zone layouts


@pytest.mark.parametrize(("layouts", "words"), [
    ([ZoneLayout("Highmem", 0, 64)], "'Highmem': not one of"),
    ([ZoneLayout("Normal", 0, 64), ZoneLayout("DMA32", 64, 64)], "DMA32: zones must be "
     "given in zone order"),
    ([ZoneLayout("Normal", 0, 64), ZoneLayout("Normal", 64, 64)], "Normal: zones must be"),
    ([ZoneLayout("Normal", -1, 64)], "Normal: start -1"),
    ([ZoneLayout("Normal", 0, 0)], "at least one page"),
    ([ZoneLayout("DMA32", 0, 64), ZoneLayout("Normal", 63, 64)], "Normal: starts at pfn "
     "0x3f, inside the previous zone"),
    ([ZoneLayout("Normal", 16, 32, holes=((8, 20),))], r"Normal: hole \[0x8, 0x14\) is "
     "not inside"),
    ([ZoneLayout("Normal", 16, 32, holes=((40, 49),))], "hole .* is not inside"),
    ([ZoneLayout("Normal", 16, 32, holes=((20, 20),))], "hole .* is not inside"),
    ([ZoneLayout("Normal", 16, 32, reserved=((44, 50),))], "reserved range .* not inside"),
    ([ZoneLayout("Normal", 0, 32, holes=((4, 12), (8, 16)))], "overlap"),
])
def test_bad_zone_layout_is_refused(layouts: list[ZoneLayout], words: str) -> None:
    with pytest.raises(LayoutError, match=words):
        build_machine(layouts, geom=tiny(2, 4, 4), nr_cpus=1)


def test_layout_error_is_a_value_error() -> None:
    assert issubclass(LayoutError, ValueError)


def test_machine_needs_a_cpu() -> None:
    with pytest.raises(ValueError, match="nr_cpus 0"):
        build_machine([ZoneLayout("Normal", 0, 64)], geom=tiny(2, 4, 4), nr_cpus=0)


@pytest.mark.parametrize("kern", KERNELS)
def test_holes_and_reserved_pages_are_not_managed(kern: str) -> None:
    """§2.5: spanned = end - start, present = spanned - holes, managed = present -
    reserved; only managed pages are free after boot."""
    lay = ZoneLayout("Normal", 3, 58, holes=((10, 14), (40, 41)), reserved=((12, 20),))
    m = build_machine([lay], kern=kern, geom=tiny(2, 4, 4), nr_cpus=1, min_free_kbytes=0)
    z = m.zone("Normal")
    assert (z.zone_start_pfn, z.spanned_pages, z.present_pages) == (3, 58, 53)
    assert z.managed_pages == 53 - 6  # 14..19: 10..13 of the range is a hole
    assert z.nr_free_pages == z.managed_pages
    assert all(m.flags[p] & PG_hole for p in (0, 1, 2, 10, 13, 40, 61, 63))
    assert all(m.flags[p] & PG_reserved for p in range(14, 20))
    assert managed_runs(m, lay) == [(3, 10), (20, 40), (41, 61)]
    check_invariants(m)


@pytest.mark.parametrize(("start", "end", "max_order", "blocks"), [
    (0, 16, 3, [(0, 3), (8, 3)]),
    (3, 10, 3, [(3, 0), (4, 2), (8, 1)]),
    (5, 13, 3, [(5, 0), (6, 1), (8, 2), (12, 0)]),
    (7, 8, 0, [(7, 0)]),
    (1, 31, 10, [(1, 0), (2, 1), (4, 2), (8, 3), (16, 3), (24, 2), (28, 1), (30, 0)]),
])
def test_aligned_blocks_is_the_canonical_decomposition(
        start: int, end: int, max_order: int, blocks: list[tuple[int, int]]) -> None:
    assert list(aligned_blocks(start, end, max_order)) == blocks


# ---------------------------------------------------------------------------------------
# the bulk boot equals freeing through the allocator


#: small zones with holes, reserved ranges, unaligned starts and a zone boundary inside
#: a max-order block
LAYOUTS: dict[str, tuple[tuple[ZoneLayout, ...], Geometry]] = {
    "aligned": ((ZoneLayout("Normal", 0, 64),), tiny(2, 4, 4)),
    "holes": ((ZoneLayout("Normal", 3, 58, holes=((10, 14), (40, 41)),
                          reserved=((12, 20),)),), tiny(2, 4, 4)),
    "two-zones": ((ZoneLayout("DMA32", 1, 26, reserved=((1, 2),)),
                   ZoneLayout("Normal", 27, 70, holes=((48, 53),), reserved=((90, 96),))),
                  tiny(2, 4, 4)),
    "big-blocks": ((ZoneLayout("DMA", 5, 27),
                    ZoneLayout("Normal", 32, 96, holes=((64, 72),), reserved=((100, 101),))),
                   tiny(3, 5, 5)),
    "all-reserved": ((ZoneLayout("DMA32", 0, 16, reserved=((0, 16),)),
                      ZoneLayout("Normal", 16, 48)), tiny(2, 4, 4)),
}


def boot_pair(kern: str, layouts: tuple[ZoneLayout, ...], geom: Geometry
              ) -> tuple[Machine, Machine]:
    """The same machine booted with the bulk free, and not freed at all."""
    kw: dict[str, Any] = {"kern": kern, "geom": geom, "nr_cpus": 2, "min_free_kbytes": 0}
    return (build_machine(list(layouts), **kw),
            build_machine(list(layouts), free_memory=False, **kw))


def managed_pfns(m: Machine, layouts: tuple[ZoneLayout, ...]) -> Iterator[int]:
    for lay in layouts:
        for s, e in managed_runs(m, lay):
            yield from range(s, e)


def free_boot_page(m: Machine, pfn: int, how: str, *, stepped: bool = False) -> None:
    """__free_pages_core for one page: refcount to 0, then free it to the tail."""
    assert m.refcount[pfn] == 1 and not m.flags[pfn] & (PG_hole | PG_reserved)
    m.refcount[pfn] = 0
    run = step_through if stepped else call
    if how == "__free_pages_ok":
        run(0, free_pages_ok, m, pfn, 0, FPI_TO_TAIL)
    else:
        run(0, free_one_page, m, m.page_zone(pfn), pfn, 0, MIGRATE_MOVABLE, FPI_TO_TAIL)


def state(m: Machine) -> dict[str, Any]:
    out: dict[str, Any] = {
        "flags": bytes(m.flags), "private": bytes(m.private),
        "refcount": m.refcount.tolist(), "lru_next": m.lru_next.tolist(),
        "lru_prev": m.lru_prev.tolist(), "pageblock": bytes(m.pageblock_flags)}
    for z in m.zones:
        out[z.name] = (list(z.nr_free), z.nr_free_pages, z.nr_free_cma, z.managed_pages,
                       z.present_pages, z.spanned_pages, z._watermark, z.lowmem_reserve)
    return out


def free_sets(m: Machine) -> dict[tuple[str, int, int], set[int]]:
    return {(z.name, o, mt): set(free_list_pfns(m, z, o, mt))
            for z in m.zones for o in range(m.geom.nr_orders) for mt in range(MIGRATE_TYPES)}


@pytest.mark.parametrize("how", ["__free_pages_ok", "free_one_page"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kern", KERNELS)
def test_bulk_boot_equals_freeing_page_by_page(kern: str, layout: str, how: str) -> None:
    layouts, geom = LAYOUTS[layout]
    bulk, slow = boot_pair(kern, layouts, geom)
    assert all(z.nr_free_pages == 0 for z in slow.zones)
    check_invariants(slow)
    for pfn in managed_pfns(slow, layouts):
        free_boot_page(slow, pfn, how)
    check_invariants(slow)
    check_invariants(bulk)
    # same blocks on the same lists in the same order (the link arrays), same counters
    assert state(slow) == state(bulk)
    for z in bulk.zones:
        assert z.nr_free_pages == z.managed_pages


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kern", ["v5.10", "v6.19"])
def test_bulk_boot_equals_freeing_aligned_chunks(kern: str, layout: str) -> None:
    """memblock_free_all frees each range in the largest aligned chunks
    (__free_pages_memory), each through __free_pages_core -> __free_pages_ok with
    FPI_TO_TAIL; 6.10+ splits chunks above pageblock size (split_large_buddy)."""
    layouts, geom = LAYOUTS[layout]
    bulk, slow = boot_pair(kern, layouts, geom)
    for lay in layouts:
        for s, e in managed_runs(slow, lay):
            for pfn, order in aligned_blocks(s, e, geom.max_order):
                slow.refcount[pfn:pfn + (1 << order)] = array("i", bytes(4 << order))
                slow.private[pfn] = order  # the model's record of a block's order
                call(0, free_pages_ok, slow, pfn, order, FPI_TO_TAIL)
    check_invariants(slow)
    assert state(slow) == state(bulk)


@pytest.mark.parametrize("kern", ["v5.10", "v6.19"])
def test_bulk_boot_equals_stepped_frees(kern: str) -> None:
    """The same with the generator variant of the free path."""
    layouts, geom = LAYOUTS["two-zones"]
    bulk, slow = boot_pair(kern, layouts, geom)
    for pfn in managed_pfns(slow, layouts):
        free_boot_page(slow, pfn, "__free_pages_ok", stepped=True)
    assert state(slow) == state(bulk)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(data=st.data(), kern=st.sampled_from(KERNELS), layout=st.sampled_from(sorted(LAYOUTS)))
def test_any_free_order_gives_the_same_blocks(data: st.DataObject, kern: str,
                                               layout: str) -> None:
    """Freeing the pages one by one in any order ends fully merged: the same blocks on
    the same lists as the bulk boot (only the order within a list may differ)."""
    layouts, geom = LAYOUTS[layout]
    bulk, slow = boot_pair(kern, layouts, geom)
    pfns = data.draw(st.permutations(list(managed_pfns(slow, layouts))), label="order")
    for pfn in pfns:
        free_boot_page(slow, pfn, "__free_pages_ok")
    check_invariants(slow)
    assert free_sets(slow) == free_sets(bulk)
    assert [list(z.nr_free) for z in slow.zones] == [list(z.nr_free) for z in bulk.zones]
    assert [z.nr_free_pages for z in slow.zones] == [z.managed_pages for z in bulk.zones]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(start=st.integers(0, 40), spanned=st.integers(1, 90),
       cuts=st.lists(st.tuples(st.booleans(), st.integers(0, 100), st.integers(1, 12)),
                     max_size=4),
       geom=st.sampled_from([tiny(2, 4, 4), tiny(3, 5, 5), tiny(1, 3, 3)]),
       kern=st.sampled_from(KERNELS))
def test_random_layouts_boot_like_page_by_page(
        start: int, spanned: int, cuts: list[tuple[bool, int, int]], geom: Geometry,
        kern: str) -> None:
    """Random zones with holes and reserved ranges: bulk boot == page-by-page frees."""
    holes: list[tuple[int, int]] = []
    reserved: list[tuple[int, int]] = []
    end = start + spanned
    for is_hole, off, length in cuts:
        s = start + off % spanned
        e = min(end, s + length)
        if is_hole:
            if any(s < he and hs < e for hs, he in holes):
                continue  # holes may not overlap
            holes.append((s, e))
        else:
            reserved.append((s, e))
    lay = ZoneLayout("Normal", start, spanned, tuple(holes), tuple(reserved))
    unmanaged = {p for s, e in holes + reserved for p in range(s, e)}
    assume(len(unmanaged) < spanned)  # no managed lowmem: no watermarks (see below)
    bulk, slow = boot_pair(kern, (lay,), geom)
    for pfn in managed_pfns(slow, (lay,)):
        free_boot_page(slow, pfn, "__free_pages_ok")
    check_invariants(bulk)
    assert state(slow) == state(bulk)
    z = bulk.zone("Normal")
    assert z.present_pages == spanned - sum(e - s for s, e in holes)
    assert z.nr_free_pages == z.managed_pages == sum(e - s for s, e in managed_runs(bulk, lay))


def test_machine_without_managed_lowmem_is_refused() -> None:
    """__setup_per_zone_wmarks divides by the lowmem pages; with none the kernel could
    not boot, and the model says so instead of dividing by zero."""
    with pytest.raises(ValueError, match="no lowmem zone has managed pages"):
        build_machine([ZoneLayout("Normal", 0, 16, reserved=((0, 16),))], geom=tiny(2, 4, 4),
                      nr_cpus=1, min_free_kbytes=0)


def test_simple_machine_lays_zones_end_to_end() -> None:
    m = simple_machine(geom=tiny(2, 4, 4), nr_cpus=1, zones=(("DMA32", 24), ("Normal", 40)),
                       min_free_kbytes=0, start_pfn=8)
    assert [(z.name, z.zone_start_pfn, z.spanned_pages) for z in m.populated_zones()] == [
        ("DMA32", 8, 24), ("Normal", 32, 40)]
    assert m.end_pfn == 80  # whole sections of 16 pages
    check_invariants(m)
