# SPDX-License-Identifier: GPL-2.0-only
"""Named x86-64 machines ("16g-8cpu") for users without a /proc/zoneinfo at hand.

The layout follows what x86-64 firmware and the kernel make of a PC with that much RAM:
ZONE_DMA is pfns 1-4095 with the legacy hole at 640 KiB-1 MiB; ZONE_DMA32 runs to 4 GiB
with the PCI hole from 3 GiB; the rest of RAM is ZONE_NORMAL from 4 GiB. A 64th of each
zone is reserved for its struct pages (64 bytes per 4 KiB page), and the kernel image
and early allocations take 32 MiB of DMA32.
"""

from __future__ import annotations

import re

from pagesim.model.build import build_machine
from pagesim.model.kernels import Kernel
from pagesim.model.mmzone import Machine, ZoneLayout

GIB_PAGES = 1 << 18
_DMA_END = 4096
_DMA32_END = 1 << 20  # 4 GiB
_LOW_RAM_END = 3 * GIB_PAGES  # the PCI hole starts at 3 GiB
_BIOS_HOLE = (0xA0, 0x100)

PRESET_RE = re.compile(r"(\d+)g-(\d+)cpus?")
EXAMPLES = ("4g-2cpu", "16g-8cpu", "64g-16cpu")


class PresetError(ValueError):
    """A preset name that does not parse or describes an impossible machine."""


def x86_64_layouts(ram_pages: int) -> list[ZoneLayout]:
    """Zone layouts of an x86-64 PC with ``ram_pages`` of RAM."""
    if ram_pages < 2 * _DMA_END:
        raise PresetError(f"{ram_pages} pages of RAM: too small for an x86-64 layout")
    dma = ZoneLayout("DMA", 1, _DMA_END - 1, holes=(_BIOS_HOLE,), reserved=((1, 0x9F),))
    low = min(ram_pages, _LOW_RAM_END)
    dma32_span = (_DMA32_END if ram_pages > _LOW_RAM_END else low) - _DMA_END
    holes = ((low, _DMA32_END),) if ram_pages > _LOW_RAM_END else ()
    dma32_present = low - _DMA_END
    kernel_image = (_DMA_END, _DMA_END + 8192)  # 32 MiB
    memmap = dma32_present // 64
    reserved: tuple[tuple[int, int], ...] = (kernel_image, (low - memmap, low))
    layouts = [dma, ZoneLayout("DMA32", _DMA_END, dma32_span, holes, reserved)]
    normal = ram_pages - low
    if normal > 0:
        memmap = normal // 64
        end = _DMA32_END + normal
        layouts.append(ZoneLayout("Normal", _DMA32_END, normal,
                                  reserved=((end - memmap, end),)))
    return layouts


def preset_machine(name: str, kern: Kernel | str = "v6.19", nr_cpus: int | None = None,
                   ) -> Machine:
    """Build a preset such as ``16g-8cpu`` (RAM in GiB, CPUs)."""
    m = PRESET_RE.fullmatch(name.strip())
    if not m:
        raise PresetError(f"unknown preset {name!r}: expected <GiB>g-<CPUs>cpu, e.g. "
                          f"{', '.join(EXAMPLES)}")
    gib, cpus = int(m.group(1)), int(m.group(2))
    if not 1 <= gib <= 1024:
        raise PresetError(f"preset {name!r}: RAM must be 1..1024 GiB")
    if not 1 <= cpus <= 256:
        raise PresetError(f"preset {name!r}: CPUs must be 1..256")
    return build_machine(x86_64_layouts(gib * GIB_PAGES), kern=kern,
                         nr_cpus=nr_cpus or cpus)
