# SPDX-License-Identifier: GPL-2.0-only
"""The ``pagesim`` command.

Every command reports bad input (a malformed /proc file, an unknown kernel, an
impossible geometry or preset) as one line, ``pagesim: error: ...``, with exit status 2,
and writes its output whole or not at all: text is built in memory and printed once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from pagesim.cli import compare as compare_cli
from pagesim.cli import plot as plot_cli
from pagesim.cli import report as report_cli
from pagesim.cli.check import add_commands
from pagesim.cli.simulate import simulate
from pagesim.cli.trace import replay_trace
from pagesim.model.build import LayoutError
from pagesim.model.geometry import GeometryError
from pagesim.model.invariants import InvariantViolation, check_invariants
from pagesim.model.kernels import (
    CHANGES,
    NEWEST,
    OLDEST,
    VARIANTS,
    Kernel,
    UnknownKernelError,
    kernel,
)
from pagesim.model.mmzone import Machine
from pagesim.model.pageset import zone_pcp_update
from pagesim.model.presets import PresetError, preset_machine
from pagesim.procfs.buddyinfo import parse_buddyinfo, render_buddyinfo
from pagesim.procfs.export import (
    buddyinfo_of,
    guess_kernel,
    matching_kernels,
    pagetypeinfo_of,
    zoneinfo_of,
)
from pagesim.procfs.machine import MachineImportError, ProcSources, machine_from_proc
from pagesim.procfs.pagetypeinfo import parse_pagetypeinfo, render_pagetypeinfo
from pagesim.procfs.types import ProcFormatError
from pagesim.procfs.zoneinfo import parse_zoneinfo, render_zoneinfo
from pagesim.runtime.sequential import call
from pagesim.trace._files import read_text

F = TypeVar("F", bound=Callable[..., Any])

#: errors that are the user's input, reported in one line with exit status 2
USER_ERRORS = (ProcFormatError, MachineImportError, UnknownKernelError, GeometryError, LayoutError,
               PresetError, InvariantViolation, ValueError, OSError)


def fail(message: str) -> NoReturn:
    click.echo(f"pagesim: error: {message}", err=True)
    sys.exit(2)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FileNotFoundError as e:
            fail(f"{e.filename}: no such file")
        except IsADirectoryError as e:
            fail(f"{e.filename}: is a directory")
        except UnicodeDecodeError as e:
            fail(f"input is not text: {e.reason}")
        except BrokenPipeError:
            # the reader went away (``| head``): stop quietly, as a tool killed by
            # SIGPIPE does, instead of reporting it as bad input
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except USER_ERRORS as e:
            fail(str(e))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pagesim")
def cli() -> None:
    """pagesim: an executable model of the Linux page allocator's per-CPU lists."""


# ---------------------------------------------------------------------------------------
# Building a machine from the common options


def machine_options(fn: F) -> F:
    opts = [
        click.option("--from", "zoneinfo_file", type=click.Path(dir_okay=False),
                     help="a /proc/zoneinfo to build the machine from"),
        click.option("--buddyinfo", "buddyinfo_file", type=click.Path(dir_okay=False),
                     help="its /proc/buddyinfo (free blocks per order)"),
        click.option("--pagetypeinfo", "pagetypeinfo_file", type=click.Path(dir_okay=False),
                     help="its /proc/pagetypeinfo (free blocks per type, pageblock types)"),
        click.option("--preset", default=None,
                     help="a built-in machine instead of --from, e.g. 16g-8cpu"),
        click.option("--kernel", "kernel_name", default=None,
                     help="kernel generation (default: guessed from --from, else v6.19)"),
        click.option("--cpus", type=click.IntRange(1, 1024), default=None,
                     help="number of CPUs (default: as in the file or preset)"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _read(path: str) -> str:
    return read_text(path)  # a file that is not text is an error naming it


def build_from_options(zoneinfo_file: str | None, buddyinfo_file: str | None,
                       pagetypeinfo_file: str | None, preset: str | None,
                       kernel_name: str | None, cpus: int | None) -> Machine:
    if zoneinfo_file and preset:
        fail("--from and --preset are alternatives; give one")
    if (buddyinfo_file or pagetypeinfo_file) and not zoneinfo_file:
        fail("--buddyinfo and --pagetypeinfo complete a --from zoneinfo; give --from too")
    if not zoneinfo_file:
        k = kernel(kernel_name or "v6.19")
        return preset_machine(preset or "4g-2cpu", k, cpus)
    zi = parse_zoneinfo(_read(zoneinfo_file), zoneinfo_file)
    src = ProcSources(zi, zoneinfo_file)
    if buddyinfo_file:
        src.buddyinfo = parse_buddyinfo(_read(buddyinfo_file), buddyinfo_file)
        src.buddyinfo_path = buddyinfo_file
    if pagetypeinfo_file:
        src.pagetypeinfo = parse_pagetypeinfo(_read(pagetypeinfo_file), pagetypeinfo_file)
        src.pagetypeinfo_path = pagetypeinfo_file
    if kernel_name:
        k = kernel(kernel_name)
    else:
        k = guess_kernel(zi)
        fits = matching_kernels(zi)
        span = f"{fits[0]} to {fits[-1]}" if fits else "no modelled release"
        click.echo(f"pagesim: {zoneinfo_file}: zoneinfo layout of {span}; modelling {k} "
                   "(choose with --kernel)", err=True)
    return machine_from_proc(src, k, cpus)


def recompute_pcp(m: Machine) -> None:
    """zone_pcp_update on every populated zone: the generation's formulas for this
    machine's managed pages, watermarks and CPU count."""
    for zone in m.zones:
        if zone.present_pages:
            call(0, zone_pcp_update, m, zone)


# ---------------------------------------------------------------------------------------
# /proc views


def _proc_command(name: str, render: Callable[[Machine], str], doc: str) -> None:
    @cli.command(name=name, help=doc)
    @machine_options
    @click.option("--recompute", is_flag=True,
                  help="recompute every pcp's high/batch (high_min/high_max) with the "
                       "generation's formulas for this machine and CPU count")
    @click.option("--check/--no-check", default=True, show_default=True,
                  help="check the model's invariants before printing")
    def command(zoneinfo_file: str | None, buddyinfo_file: str | None,
                pagetypeinfo_file: str | None, preset: str | None, kernel_name: str | None,
                cpus: int | None, recompute: bool, check: bool) -> None:
        m = build_from_options(zoneinfo_file, buddyinfo_file, pagetypeinfo_file, preset,
                               kernel_name, cpus)
        if recompute:
            recompute_pcp(m)
        if check:
            check_invariants(m)
        click.echo(render(m), nl=False)


_proc_command("zoneinfo", lambda m: render_zoneinfo(zoneinfo_of(m)),
              "Print the machine's /proc/zoneinfo, as its kernel generation prints it.")
_proc_command("buddyinfo", lambda m: render_buddyinfo(buddyinfo_of(m)),
              "Print the machine's /proc/buddyinfo.")
_proc_command("pagetypeinfo", lambda m: render_pagetypeinfo(pagetypeinfo_of(m)),
              "Print the machine's /proc/pagetypeinfo.")


# ---------------------------------------------------------------------------------------
# Kernel generations


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def kernels(as_json: bool) -> None:
    """List the behaviour changes between the kernel generations pagesim models."""
    if as_json:
        click.echo(json.dumps({
            "oldest": f"v{OLDEST[0]}.{OLDEST[1]}", "newest": f"v{NEWEST[0]}.{NEWEST[1]}",
            "changes": [{"feature": c.name, "since": f"v{c.since[0]}.{c.since[1]}",
                         "commit": c.commit, "summary": c.summary, "dated": c.dated}
                        for c in sorted(CHANGES, key=lambda c: c.since)],
            "variants": [{"name": name, "base": base, "description": desc,
                          "features": dict(over)}
                         for name, (base, over, desc) in sorted(VARIANTS.items())]},
            indent=2))
        return
    lines = [f"pagesim models every release from v{OLDEST[0]}.{OLDEST[1]} to "
             f"v{NEWEST[0]}.{NEWEST[1]}; pass one with --kernel. What changes, and when:",
             ""]
    for c in sorted(CHANGES, key=lambda c: c.since):
        mark = "" if c.dated == "verified" else " (release inferred)"
        lines.append(f"  v{c.since[0]}.{c.since[1]:<3} {c.name}{mark}")
        lines.append(f"         {c.summary}")
        lines.append(f"         [{c.commit}]")
    lines += ["", "Hypothetical variants (one ingredient of a fix changed; pass the name "
              "with --kernel):", ""]
    for name, (base, over, desc) in sorted(VARIANTS.items()):
        what = ", ".join(f"{f}={'on' if v else 'off'}" for f, v in over)
        lines.append(f"  {name:<18} {base} with {what}")
        lines.append(f"  {'':<18} {desc}")
    click.echo("\n".join(lines))


# ---------------------------------------------------------------------------------------
# The demo


@cli.command()
@click.option("--kernel", "kernel_names", default="v5.10,v5.11,v6.1,v6.19", show_default=True,
              help="comma-separated generations to compare")
def demo(kernel_names: str) -> None:
    """Import a real Debian 6.1 machine, recompute its pcp limits per generation, run
    allocations and frees through the pcplists, and check every invariant."""
    from pagesim.cli.demo import run_demo

    ks: list[Kernel] = [kernel(name) for name in kernel_names.split(",") if name.strip()]
    if not ks:
        fail("--kernel: give at least one generation")
    click.echo(run_demo(ks), nl=False)


add_commands(cli)
cli.add_command(replay_trace)
compare_cli.add_commands(cli)
cli.add_command(simulate)
cli.add_command(plot_cli.plot)
report_cli.add_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; click's own usage errors (an option that is not a number, an
    unknown option) get the same one-line form and exit status 2 as every other bad
    input, with a pointer to --help instead of the whole usage text."""
    try:
        code = cli.main(args=argv, prog_name="pagesim", standalone_mode=False)
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx is not None else "pagesim"
        fail(f"{e.format_message()} (see '{command} --help')")
    except click.ClickException as e:
        fail(e.format_message())
    except click.Abort:
        click.echo("pagesim: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
