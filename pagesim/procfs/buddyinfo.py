# SPDX-License-Identifier: GPL-2.0-only
"""/proc/buddyinfo, parsed and printed byte for byte.

The format is ``frag_show_print()`` in mm/vmstat.c (the same from 5.8 to 6.19): one line
per *populated* zone, ``"Node %d, zone %8s "`` then ``"%6lu "`` per order, the number of
free blocks of that order over all migratetypes (isolated ones included). Every line has
NR_PAGE_ORDERS columns, 11 on x86-64 with 4 KiB pages in every release pagesim models;
a line with another count is a damaged file, which is why the count is checked rather
than learnt.
"""

from __future__ import annotations

import re

from pagesim.procfs._lines import Lines, signed, unsigned
from pagesim.procfs.types import Buddyinfo, BuddyinfoZone

#: Orders printed on x86-64 (MAX_ORDER 11 before 6.4, NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
#: after): the same 11 columns in both eras.
NR_ORDERS = 11

_LINE = re.compile(r"Node (\S+), zone +(\S+) (.*)")


def _prefix(node: int, name: str) -> str:
    return f"Node {node}, zone {name:>8} "


def render_buddyinfo_line(zone: BuddyinfoZone) -> str:
    """One zone's line, without the newline."""
    return _prefix(zone.node, zone.name) + "".join(f"{n:6d} " for n in zone.nr_free)


def parse_buddyinfo(
    text: str, path: str = "<buddyinfo>", nr_orders: int | None = NR_ORDERS
) -> Buddyinfo:
    """Parse /proc/buddyinfo; ``nr_orders=None`` takes the column count from line 1.

    Errors say ``path:line: problem``.
    """
    lines = Lines(text, path)
    zones: list[BuddyinfoZone] = []
    expected = nr_orders
    while not lines.at_end():
        line = lines.take("a zone line")
        m = _LINE.fullmatch(line)
        if m is None:
            raise lines.last_error(
                f"unexpected line {line!r}: expected 'Node N, zone NAME' and free counts")
        node = signed(lines, m.group(1), "node")
        tokens = m.group(3).split()
        if expected is None:
            expected = len(tokens)
        if len(tokens) != expected:
            raise lines.last_error(f"expected {expected} orders, got {len(tokens)} columns")
        counts = [unsigned(lines, tok, f"order {i}") for i, tok in enumerate(tokens)]
        zone = BuddyinfoZone(node=node, name=m.group(2), nr_free=counts)
        lines.check(line, render_buddyinfo_line(zone))
        zones.append(zone)
    return Buddyinfo(zones=zones)


def render_buddyinfo(b: Buddyinfo) -> str:
    """The text of /proc/buddyinfo holding ``b``."""
    return "".join(render_buddyinfo_line(z) + "\n" for z in b.zones)
