# SPDX-License-Identifier: GPL-2.0-only
"""/proc/zoneinfo, parsed and printed byte for byte.

The format is ``zoneinfo_show_print()`` in mm/vmstat.c. One parser handles every
generation pagesim models because the generations differ only by optional lines, which
the parser accepts wherever the kernel could print them and records as present (a value)
or absent (``None``); the renderer prints exactly the lines that are present. Which lines
a given release has is :mod:`pagesim.procfs.layout`'s business, not this module's:

* 5.8-5.11: no ``boost``/``cma``; pagesets print ``count: ``, ``high:  ``, ``batch: ``;
* 5.12+ ``cma``, 5.17+ ``boost`` (5.16 unread), 6.12+ ``promo`` in the watermark block;
* 6.13+ pagesets add ``high_min``/``high_max``, all five labels padded to one width;
* 6.19+ the trailer adds ``reserved_highatomic`` and ``free_highatomic``.

A zone is printed in full only if populated (present pages); an unpopulated zone stops
after its ``protection:`` line. The ``per-node stats`` block belongs to the first
populated zone of each node. Stat names are not checked against a list, since they
depend on the release and the build; each must only be one word.
"""

from __future__ import annotations

import re

from pagesim.procfs._lines import Lines, labelled, signed, unsigned
from pagesim.procfs.types import PagesetInfo, ZoneInfo, Zoneinfo

_HEADER = re.compile(r"Node (\S+), zone +(\S+)")
_STAT = re.compile(r"      (\S+) +(\S+)")
_PROTECTION = re.compile(r"        protection: \((.*)\)")
_PER_NODE = "  per-node stats"
_PAGESETS = "  pagesets"

#: Watermark-block labels, in print order, with their optional-ness.
_WATERMARKS: tuple[tuple[str, str, bool], ...] = (
    ("free", "  pages free     ", False),
    ("boost", "        boost    ", True),
    ("min", "        min      ", False),
    ("low", "        low      ", False),
    ("high", "        high     ", False),
    ("promo", "        promo    ", True),
    ("spanned", "        spanned  ", False),
    ("present", "        present  ", False),
    ("managed", "        managed  ", False),
    ("cma", "        cma      ", True),
)

_CPU = "    cpu: "
_PCP_INDENT = "              "
#: Pageset labels before 6.13 (count/high/batch) and from 6.13 (padded for high_min/max).
_PCP_NARROW = {"count": "count: ", "high": "high:  ", "batch": "batch: "}
_PCP_WIDE = {
    "count": "count:    ",
    "high": "high:     ",
    "batch": "batch:    ",
    "high_min": "high_min: ",
    "high_max": "high_max: ",
}
_THRESHOLD = "  vm stats threshold: "

#: Trailer labels, in print order, with their optional-ness.
_TRAILER: tuple[tuple[str, str, bool], ...] = (
    ("node_unreclaimable", "  node_unreclaimable:  ", False),
    ("start_pfn", "  start_pfn:           ", False),
    ("reserved_highatomic", "  reserved_highatomic: ", True),
    ("free_highatomic", "  free_highatomic:     ", True),
)


def _header(node: int, name: str) -> str:
    return f"Node {node}, zone {name:>8}"


def _stat_line(name: str, value: int) -> str:
    return f"      {name:<12} {value}"


def _protection_line(values: list[int]) -> str:
    return "        protection: (" + ", ".join(str(v) for v in values) + ")"


def _is_header(line: str | None) -> bool:
    return line is not None and line.startswith("Node ")


def _parse_stats(lines: Lines, stop: str, where: str) -> list[tuple[str, int]]:
    """Stat lines up to (not including) the line starting with ``stop``."""
    stats: list[tuple[str, int]] = []
    while True:
        nxt = lines.peek()
        if nxt is not None and nxt.startswith(stop):
            return stats
        line = lines.take(f"{where} or {stop.strip()!r}")
        m = _STAT.fullmatch(line)
        if m is None:
            raise lines.last_error(
                f"unexpected line {line!r}: expected {where} or {stop.strip()!r}")
        name = m.group(1)
        value = unsigned(lines, m.group(2), name)
        lines.check(line, _stat_line(name, value))
        stats.append((name, value))


class _Shape:
    """Which optional lines this file prints, learnt from the first zone that shows them.

    A kernel prints the same optional lines for every zone, so once one zone has shown
    (or not) a line, a later zone that differs is an error. This is what catches a file
    cut right before an optional line (the cut would otherwise read as an older format).
    """

    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}
        #: the CPUs of the first zone with pagesets: every populated zone lists the
        #: same ones (the kernel prints for_each_online_cpu() for each)
        self.cpus: list[int] | None = None

    def has(self, lines: Lines, key: str, prefix: str) -> bool:
        """Whether the next line is the optional ``prefix`` line, as the file demands."""
        nxt = lines.peek()
        present = nxt is not None and nxt.startswith(prefix)
        known = self.seen.setdefault(key, present)
        if known and not present:
            what = f"the {prefix.strip()!r} line (the zones above have it)"
            if nxt is None:
                raise lines.error(f"unexpected end of file: expected {what}")
            raise lines.error(f"unexpected line {nxt!r}: expected {what}")
        if present and not known:
            raise lines.error(f"unexpected {prefix.strip()!r} line: the zones above have none")
        return present


def _parse_pageset(lines: Lines, shape: _Shape, previous: int | None) -> PagesetInfo:
    cpu = labelled(lines, _CPU, "cpu", is_signed=True)
    if cpu < 0 or (previous is not None and cpu <= previous):
        after = "" if previous is None else f" after cpu {previous}"
        raise lines.last_error(f"cpu {cpu}{after}: the kernel lists CPUs in increasing "
                               "order from 0")
    wide = shape.has(lines, "pcp_high_min_max", _PCP_INDENT + _PCP_WIDE["count"])
    labels = _PCP_WIDE if wide else _PCP_NARROW
    values: dict[str, int] = {}
    for key, label in labels.items():
        value = labelled(lines, _PCP_INDENT + label, key, is_signed=True)
        # %d fields, but never negative in a kernel, and pageset_update() keeps batch
        # at least 1
        least = 1 if key == "batch" else 0
        if value < least:
            raise lines.last_error(f"{key}: {value} is impossible (a pcp's {key} is at "
                                   f"least {least})")
        values[key] = value
    threshold = None
    if shape.has(lines, "vm_stats_threshold", _THRESHOLD):
        threshold = labelled(lines, _THRESHOLD, "vm stats threshold", is_signed=True)
    return PagesetInfo(
        cpu=cpu,
        count=values["count"],
        high=values["high"],
        batch=values["batch"],
        high_min=values.get("high_min"),
        high_max=values.get("high_max"),
        vm_stats_threshold=threshold,
    )


def _parse_optional_block(
    lines: Lines, shape: _Shape, block: tuple[tuple[str, str, bool], ...]
) -> dict[str, int | None]:
    values: dict[str, int | None] = {}
    for key, prefix, optional in block:
        if optional and not shape.has(lines, key, prefix):
            values[key] = None
        else:
            values[key] = labelled(lines, prefix, key)
    return values


def _parse_zone(lines: Lines, shape: _Shape) -> ZoneInfo:
    line = lines.take("a zone header")
    m = _HEADER.fullmatch(line)
    if m is None:
        raise lines.last_error(
            f"unexpected line {line!r}: expected a zone header 'Node N, zone NAME'")
    node = signed(lines, m.group(1), "node")
    name = m.group(2)
    lines.check(line, _header(node, name))

    per_node: list[tuple[str, int]] | None = None
    if lines.peek() == _PER_NODE:
        lines.take(_PER_NODE)
        per_node = _parse_stats(lines, _WATERMARKS[0][1], "a per-node stat")

    marks = _parse_optional_block(lines, shape, _WATERMARKS)

    line = lines.take("the 'protection:' line")
    pm = _PROTECTION.fullmatch(line)
    if pm is None:
        raise lines.last_error(f"unexpected line {line!r}: expected 'protection: (...)'")
    protection = [signed(lines, tok, "protection") for tok in pm.group(1).split(", ")]
    lines.check(line, _protection_line(protection))

    def mark(key: str) -> int:
        value = marks[key]
        assert value is not None  # the mandatory ones were parsed or raised
        return value

    zone = ZoneInfo(
        node=node,
        name=name,
        per_node_stats=per_node,
        free=mark("free"),
        min=mark("min"),
        low=mark("low"),
        high=mark("high"),
        spanned=mark("spanned"),
        present=mark("present"),
        managed=mark("managed"),
        protection=protection,
        boost=marks["boost"],
        promo=marks["promo"],
        cma=marks["cma"],
    )
    # populated_zone() is "present pages != 0": that decides whether the rest follows.
    if zone.present == 0:
        zone.populated = False
        if not lines.at_end() and not _is_header(lines.peek()):
            line = lines.take("a zone header")
            raise lines.last_error(
                f"unexpected line {line!r}: a zone with no present pages ends at "
                "'protection:'")
        return zone
    if lines.at_end():
        raise lines.error(
            "unexpected end of file: a zone with present pages continues with its stats")

    zone.stats = _parse_stats(lines, _PAGESETS, "a zone stat")
    lines.take(_PAGESETS)
    while (nxt := lines.peek()) is not None and nxt.startswith(_CPU):
        previous = zone.pagesets[-1].cpu if zone.pagesets else None
        at = lines.lineno
        zone.pagesets.append(_parse_pageset(lines, shape, previous))
        _check_cpu(lines, shape, zone, at)
    if shape.cpus is None:
        shape.cpus = [p.cpu for p in zone.pagesets]
    elif len(zone.pagesets) != len(shape.cpus):
        raise lines.error(f"zone {name} lists {len(zone.pagesets)} CPUs' pagesets, the "
                          f"zones above {len(shape.cpus)}")

    trailer = _parse_optional_block(lines, shape, _TRAILER)
    zone.node_unreclaimable = trailer["node_unreclaimable"]
    zone.start_pfn = trailer["start_pfn"]
    zone.reserved_highatomic = trailer["reserved_highatomic"]
    zone.free_highatomic = trailer["free_highatomic"]
    if not lines.at_end() and not _is_header(lines.peek()):
        line = lines.take("a zone header")
        raise lines.last_error(f"unexpected line {line!r}: expected a zone header")
    return zone


def _check_cpu(lines: Lines, shape: _Shape, zone: ZoneInfo, at: int) -> None:
    """The pageset just parsed (its ``cpu:`` line is ``at``) is for the CPU the zones
    above list in that place."""
    if shape.cpus is None:
        return
    i = len(zone.pagesets) - 1
    cpu = zone.pagesets[i].cpu
    want = shape.cpus[i] if i < len(shape.cpus) else None
    if cpu != want:
        expected = "no more CPUs" if want is None else f"cpu {want}"
        raise lines.error(f"cpu {cpu}: the zones above list {expected} here", at)


def parse_zoneinfo(text: str, path: str = "<zoneinfo>") -> Zoneinfo:
    """Parse the text of /proc/zoneinfo; errors say ``path:line: problem``."""
    lines = Lines(text, path)
    shape = _Shape()
    zones: list[ZoneInfo] = []
    while not lines.at_end():
        zones.append(_parse_zone(lines, shape))
    return Zoneinfo(zones=zones)


def _render_zone(z: ZoneInfo, out: list[str]) -> None:
    out.append(_header(z.node, z.name))
    if z.per_node_stats is not None:
        out.append(_PER_NODE)
        out.extend(_stat_line(name, value) for name, value in z.per_node_stats)
    marks: dict[str, int | None] = {
        "free": z.free, "boost": z.boost, "min": z.min, "low": z.low, "high": z.high,
        "promo": z.promo, "spanned": z.spanned, "present": z.present, "managed": z.managed,
        "cma": z.cma,
    }
    for key, prefix, _ in _WATERMARKS:
        value = marks[key]
        if value is not None:
            out.append(f"{prefix}{value}")
    out.append(_protection_line(z.protection))
    if not z.populated:
        return
    out.extend(_stat_line(name, value) for name, value in z.stats)
    out.append(_PAGESETS)
    for p in z.pagesets:
        out.append(f"{_CPU}{p.cpu}")
        wide = p.high_min is not None
        if wide != (p.high_max is not None):
            raise ValueError(f"cpu {p.cpu} of zone {z.node}/{z.name}: high_min and "
                             "high_max are printed together or not at all")
        labels = _PCP_WIDE if wide else _PCP_NARROW
        values: dict[str, int | None] = {
            "count": p.count, "high": p.high, "batch": p.batch,
            "high_min": p.high_min, "high_max": p.high_max,
        }
        for key, label in labels.items():
            value = values[key]
            if value is not None:
                out.append(f"{_PCP_INDENT}{label}{value}")
        if p.vm_stats_threshold is not None:
            out.append(f"{_THRESHOLD}{p.vm_stats_threshold}")
    trailer: dict[str, int | None] = {
        "node_unreclaimable": z.node_unreclaimable,
        "start_pfn": z.start_pfn,
        "reserved_highatomic": z.reserved_highatomic,
        "free_highatomic": z.free_highatomic,
    }
    for key, prefix, optional in _TRAILER:
        value = trailer[key]
        if value is None and not optional:
            raise ValueError(f"zone {z.node}/{z.name} is populated but has no {key}")
        if value is not None:
            out.append(f"{prefix}{value}")


def render_zoneinfo(z: Zoneinfo) -> str:
    """The text of /proc/zoneinfo holding ``z``: the lines that are present, nothing else."""
    out: list[str] = []
    for zone in z.zones:
        _render_zone(zone, out)
    return "".join(line + "\n" for line in out)
