# SPDX-License-Identifier: GPL-2.0-only
"""Page, pageblock, order and section sizes; x86-64 by default, shrinkable for checking.

The checker explores tiny machines (pageblocks of 4 pages, 3 orders), so nothing in the
model may hard-code 512-page pageblocks or 11 orders: everything reads a Geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: include/linux/mmzone.h: orders up to this are "cheap" and, since 5.13, cached on pcplists.
PAGE_ALLOC_COSTLY_ORDER = 3


class GeometryError(ValueError):
    """An impossible geometry (names the parameter and the constraint it breaks)."""


@dataclass(frozen=True)
class Geometry:
    """Sizes as orders (log2 of a page count)."""

    #: arch/x86/include/asm/page_types.h: 4 KiB pages
    page_shift: int = 12
    #: include/linux/pageblock-flags.h: HUGETLB_PAGE_ORDER = 21 - 12 on x86-64
    pageblock_order: int = 9
    #: NR_PAGE_ORDERS (= MAX_ORDER in 5.x, where MAX_ORDER was exclusive): orders 0..10
    nr_orders: int = 11
    #: SECTION_SIZE_BITS - PAGE_SHIFT = 27 - 12 (arch/x86/include/asm/sparsemem.h)
    section_order: int = 15
    #: CONFIG_CMA: whether MIGRATE_CMA exists (it changes MIGRATE_ISOLATE's number)
    cma: bool = False
    #: HPAGE_PMD_ORDER: the THP order cached on pcplists since 5.13 (0 = no THP)
    thp_order: int = 9
    #: the largest order (MAX_PAGE_ORDER in 6.x, MAX_ORDER - 1 in 5.x): a field, not a
    #: property, because every free into the buddy reads it
    max_order: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_order", self.nr_orders - 1)
        if not 9 <= self.page_shift <= 16:
            raise GeometryError(f"page_shift {self.page_shift}: must be 9..16")
        if self.nr_orders < 1 or self.nr_orders > 20:
            raise GeometryError(f"nr_orders {self.nr_orders}: must be 1..20")
        if not 0 <= self.pageblock_order <= self.max_order:
            raise GeometryError(
                f"pageblock_order {self.pageblock_order}: must be 0..{self.max_order} "
                f"(the largest order, nr_orders - 1); a pageblock cannot exceed a max-order block")
        if self.section_order < self.max_order:
            raise GeometryError(
                f"section_order {self.section_order}: a section must hold a max-order block "
                f"(>= {self.max_order})")
        if self.thp_order < 0 or self.thp_order > self.max_order:
            raise GeometryError(f"thp_order {self.thp_order}: must be 0..{self.max_order}")

    @property
    def pageblock_nr_pages(self) -> int:
        return 1 << self.pageblock_order

    @property
    def max_order_nr_pages(self) -> int:
        return 1 << self.max_order

    @property
    def pages_per_section(self) -> int:
        return 1 << self.section_order

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift


X86_64 = Geometry()


def tiny(pageblock_order: int = 2, nr_orders: int = 3, section_order: int = 3) -> Geometry:
    """A geometry small enough to explore exhaustively (pageblocks of 4 pages by default)."""
    return Geometry(pageblock_order=pageblock_order, nr_orders=nr_orders,
                    section_order=section_order, thp_order=0)
