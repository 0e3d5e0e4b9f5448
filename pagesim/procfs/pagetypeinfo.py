# SPDX-License-Identifier: GPL-2.0-only
"""/proc/pagetypeinfo, parsed and printed byte for byte.

The format is ``pagetypeinfo_show()`` and its helpers in mm/vmstat.c, unchanged from
5.8 to 6.19. Each node with memory prints one section:

* ``Page block order: %d``, ``Pages per block:  %lu``, a blank line;
* the header "Free pages count per migrate type at order" padded to 43 columns, then
  ``%6d`` per order; then, for every populated zone and every migratetype,
  ``Node %4d, zone %8s, type %12s`` and one count per order: the length of that free
  list, where the kernel stops counting at 100000 and prints ``>100000``;
* a blank line, "Number of blocks type " padded to 23 columns and ``%12s`` per
  migratetype; then per populated zone ``Node %d, zone %8s`` and ``%12lu`` per type;
* only with page_owner enabled, a blank line and a "Number of mixed blocks" table, which
  this parser refuses (pagesim has no page_owner, and a capture that has one would not
  round-trip through our records).

The migratetype columns are the build's (``CMA`` only with CONFIG_CMA), so they are read
from the file, not assumed; every zone and both tables must agree on them.
"""

from __future__ import annotations

import re
from itertools import groupby

from pagesim.procfs._lines import Lines, labelled, signed, unsigned
from pagesim.procfs.types import Pagetypeinfo, PagetypeinfoZone

#: The kernel stops walking a free list here (lockup avoidance) and prints ">100000".
FREE_COUNT_CAP = 100000

_ORDER_PREFIX = "Page block order: "
_PER_BLOCK_PREFIX = "Pages per block:  "
_FREE_LABEL = "Free pages count per migrate type at order"
_BLOCKS_LABEL = "Number of blocks type "
_MIXED_LABEL = "Number of mixed blocks"

_FREE_LINE = re.compile(r"Node +(\S+), zone +(\S+), type +(\S+) (.*)")
_BLOCK_LINE = re.compile(r"Node (\S+), zone +(\S+) (.*)")


def _free_header(nr_orders: int) -> str:
    return f"{_FREE_LABEL:<43} " + "".join(f"{o:6d} " for o in range(nr_orders))


def _free_line(node: int, zone: str, mtype: str, counts: list[int], capped: set[int]) -> str:
    cells = "".join(
        f">{FREE_COUNT_CAP:6d} " if (o in capped or n >= FREE_COUNT_CAP) else f"{n:6d} "
        for o, n in enumerate(counts)
    )
    return f"Node {node:4d}, zone {zone:>8}, type {mtype:>12} " + cells


def _blocks_header(mtypes: list[str]) -> str:
    return f"{_BLOCKS_LABEL:<23}" + "".join(f"{m:>12} " for m in mtypes)


def _block_line(node: int, zone: str, counts: list[int]) -> str:
    return f"Node {node}, zone {zone:>8} " + "".join(f"{n:12d} " for n in counts)


class _Parser:
    """State shared across node sections: the constants every section must repeat."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.pageblock_order: int | None = None
        self.pages_per_block: int | None = None
        self.nr_orders: int | None = None
        self.mtypes: list[str] | None = None
        self.zones: list[PagetypeinfoZone] = []

    def _same(self, attr: str, value: int, what: str) -> None:
        known = getattr(self, attr)
        if known is None:
            setattr(self, attr, value)
        elif known != value:
            raise self.lines.last_error(f"{what} {value} differs from {known} above")

    def _blank(self, expected: str) -> None:
        line = self.lines.take(expected)
        if line != "":
            raise self.lines.last_error(f"unexpected line {line!r}: expected {expected}")

    def section(self) -> None:
        lines = self.lines
        order = labelled(lines, _ORDER_PREFIX, "page block order", is_signed=True)
        if not 0 <= order < 64:
            raise lines.last_error(f"page block order {order} is impossible")
        self._same("pageblock_order", order, "page block order")
        per_block = labelled(lines, _PER_BLOCK_PREFIX, "pages per block")
        if per_block != 1 << order:
            raise lines.last_error(f"pages per block {per_block}: a pageblock of order "
                                   f"{order} has {1 << order}")
        self._same("pages_per_block", per_block, "pages per block")
        self._blank("a blank line")

        line = lines.take("the free-pages header")
        if not line.startswith(_FREE_LABEL):
            raise lines.last_error(f"unexpected line {line!r}: expected {_FREE_LABEL!r}")
        tokens = line[len(_FREE_LABEL):].split()
        orders = [signed(lines, tok, "order") for tok in tokens]
        if orders != list(range(len(orders))) or not orders:
            raise lines.last_error(f"orders must count 0, 1, 2, ...; got {tokens}")
        self._same("nr_orders", len(orders), "number of orders")
        lines.check(line, _free_header(len(orders)))

        section_zones = self._free_table(len(orders))
        self._blank("a blank line before the block counts")
        self._block_table(section_zones)
        self.zones.extend(section_zones)

        if lines.peek() == "":
            lines.take("a blank line")
            nxt = lines.peek()
            if nxt is not None and nxt.startswith(_MIXED_LABEL):
                lines.take(_MIXED_LABEL)
                raise lines.last_error(
                    "the page_owner 'Number of mixed blocks' table is not supported")
            raise lines.last_error(
                "unexpected blank line: expected the next node's 'Page block order:'")

    def _free_table(self, nr_orders: int) -> list[PagetypeinfoZone]:
        lines = self.lines
        zones: list[PagetypeinfoZone] = []
        current: PagetypeinfoZone | None = None
        while lines.peek() not in (None, ""):
            line = lines.take("a free-count line")
            m = _FREE_LINE.fullmatch(line)
            if m is None:
                raise lines.last_error(
                    f"unexpected line {line!r}: expected 'Node N, zone NAME, type TYPE' "
                    "and free counts")
            node = signed(lines, m.group(1), "node")
            name, mtype = m.group(2), m.group(3)
            tokens = m.group(4).split()
            if len(tokens) != nr_orders:
                raise lines.last_error(
                    f"expected {nr_orders} orders, got {len(tokens)} columns")
            counts: list[int] = []
            capped: set[int] = set()
            for order, tok in enumerate(tokens):
                if tok.startswith(">"):
                    unsigned(lines, tok[1:], f"order {order}")
                    capped.add(order)
                    counts.append(FREE_COUNT_CAP + 1)
                else:
                    counts.append(unsigned(lines, tok, f"order {order}"))
            lines.check(line, _free_line(node, name, mtype, counts, capped))

            if current is None or (current.node, current.name) != (node, name):
                if current is not None:
                    self._check_mtypes(current, None, at=lines.pos)
                current = PagetypeinfoZone(node=node, name=name, free={}, blocks={})
                zones.append(current)
            self._check_mtypes(current, mtype)
            current.free[mtype] = counts
            current.capped.update((mtype, o) for o in capped)
        if current is not None:
            self._check_mtypes(current, None, at=lines.lineno)
        return zones

    def _check_mtypes(self, zone: PagetypeinfoZone, mtype: str | None, at: int = 0) -> None:
        """Check the next migratetype line of ``zone``.

        ``mtype`` is ``None`` when the zone has ended; ``at`` is then the line number where
        its next migratetype would have been.
        """
        have = list(zone.free)
        if self.mtypes is None:  # the first zone defines the columns
            if mtype is None:
                self.mtypes = have
            elif mtype in have:
                raise self.lines.last_error(f"migratetype {mtype!r} repeated in zone {zone.name}")
            return
        want = self.mtypes[len(have)] if len(have) < len(self.mtypes) else None
        if mtype != want:
            got = "the end of the zone" if mtype is None else repr(mtype)
            exp = "the end of the zone" if want is None else repr(want)
            if mtype is None:
                raise self.lines.error(
                    f"zone {zone.name} lists {len(have)} migratetypes, expected "
                    f"{len(self.mtypes)} ({exp} next)", at)
            raise self.lines.last_error(f"expected {exp} in zone {zone.name}, got {got}")

    def _block_table(self, zones: list[PagetypeinfoZone]) -> None:
        lines = self.lines
        line = lines.take("the 'Number of blocks type' header")
        if not line.startswith(_BLOCKS_LABEL):
            raise lines.last_error(f"unexpected line {line!r}: expected {_BLOCKS_LABEL!r}")
        mtypes = line[len(_BLOCKS_LABEL):].split()
        if self.mtypes is None:
            self.mtypes = mtypes
        elif mtypes != self.mtypes:
            raise lines.last_error(
                f"block-count columns {mtypes} differ from the free table's {self.mtypes}")
        lines.check(line, _blocks_header(mtypes))

        for zone in zones:
            line = lines.take(f"the block counts of zone {zone.name}")
            m = _BLOCK_LINE.fullmatch(line)
            if m is None:
                raise lines.last_error(
                    f"unexpected line {line!r}: expected the block counts of zone "
                    f"{zone.name}")
            node = signed(lines, m.group(1), "node")
            if (node, m.group(2)) != (zone.node, zone.name):
                raise lines.last_error(
                    f"expected the block counts of node {zone.node} zone {zone.name}, "
                    f"got node {node} zone {m.group(2)}")
            tokens = m.group(3).split()
            if len(tokens) != len(mtypes):
                raise lines.last_error(
                    f"expected {len(mtypes)} migratetypes, got {len(tokens)} columns")
            counts = [unsigned(lines, tok, mt) for tok, mt in zip(tokens, mtypes, strict=True)]
            lines.check(line, _block_line(node, zone.name, counts))
            zone.blocks = dict(zip(mtypes, counts, strict=True))
        nxt = lines.peek()
        if nxt is not None and nxt != "" and not nxt.startswith(_ORDER_PREFIX):
            line = lines.take("the next section")
            raise lines.last_error(
                f"unexpected line {line!r}: every zone's block counts are already listed")


def parse_pagetypeinfo(text: str, path: str = "<pagetypeinfo>") -> Pagetypeinfo:
    """Parse /proc/pagetypeinfo (one section per node with memory).

    Errors say ``path:line: problem``.
    """
    parser = _Parser(Lines(text, path))
    while not parser.lines.at_end():
        parser.section()
    assert parser.pageblock_order is not None and parser.pages_per_block is not None
    assert parser.nr_orders is not None and parser.mtypes is not None
    return Pagetypeinfo(
        pageblock_order=parser.pageblock_order,
        pages_per_block=parser.pages_per_block,
        nr_orders=parser.nr_orders,
        migratetypes=parser.mtypes,
        zones=parser.zones,
    )


def render_pagetypeinfo(p: Pagetypeinfo) -> str:
    """The text of /proc/pagetypeinfo holding ``p``: a section per run of one node's zones."""
    out: list[str] = []
    for _, group in groupby(p.zones, key=lambda z: z.node):
        zones = list(group)
        out += [f"{_ORDER_PREFIX}{p.pageblock_order}", f"{_PER_BLOCK_PREFIX}{p.pages_per_block}",
                "", _free_header(p.nr_orders)]
        for z in zones:
            for mtype in p.migratetypes:
                capped = {o for (mt, o) in z.capped if mt == mtype}
                out.append(_free_line(z.node, z.name, mtype, z.free[mtype], capped))
        out += ["", _blocks_header(p.migratetypes)]
        out += [_block_line(z.node, z.name, [z.blocks[m] for m in p.migratetypes])
                for z in zones]
    return "".join(line + "\n" for line in out)
