# SPDX-License-Identifier: GPL-2.0-only
"""Named scenarios for ``pagesim check``: a one-line description and a builder.

A scenario is a recipe, not a program: ``build(kernel, cpus)`` returns a fresh
:class:`~pagesim.runtime.executor.Program` for one kernel generation and CPU count, so
the command line (and a reproducer script) can rebuild exactly the program a
counterexample was found on from three values: its name, the kernel and the CPU count.

Scenario files (TOML, :mod:`pagesim.scenarios.spec`) are read by :func:`resolve`, which
takes a name or a path wherever a scenario is asked for.

Built in: the allocator scenarios of :mod:`pagesim.scenarios.allocator`, and the toys of
:mod:`pagesim.explore.toys` (whose answers are known, some of them violations, so the
command line can show a counterexample without an allocator bug).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pagesim.runtime.executor import Program


class ScenarioError(ValueError):
    """A scenario that does not exist, or parameters it does not accept."""


@dataclass(frozen=True)
class Scenario:
    """A named, buildable program.

    ``uses_kernel`` says whether the kernel generation matters (the toys ignore it);
    ``min_cpus``/``max_cpus`` bound ``cpus`` and ``default_cpus`` is used when none is
    given. ``expected`` is the documented answer ("verified", "violation", "deadlock"),
    shown by ``pagesim scenarios`` so a user knows what a run should say.
    """

    name: str
    description: str
    builder: Callable[[str, int], Program]
    expected: str
    uses_kernel: bool = True
    min_cpus: int = 2
    max_cpus: int = 2
    default_cpus: int = 2
    #: the kernel a run uses when none is given (scenario files may name one)
    default_kernel: str | None = None
    #: the absolute path of the scenario file it was read from (None: built in)
    source: str | None = None

    def program(self, kernel: str, cpus: int | None = None) -> Program:
        """Build the program for ``kernel`` and ``cpus`` (default: ``default_cpus``)."""
        n = self.default_cpus if cpus is None else cpus
        if not self.min_cpus <= n <= self.max_cpus:
            allowed = (str(self.min_cpus) if self.min_cpus == self.max_cpus
                       else f"{self.min_cpus} to {self.max_cpus}")
            raise ScenarioError(f"scenario {self.name} runs on {allowed} CPUs, not {n}")
        return self.builder(kernel, n)


_REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario; names are unique."""
    if scenario.name in _REGISTRY:
        raise ScenarioError(f"scenario {scenario.name} is registered twice")
    _REGISTRY[scenario.name] = scenario
    return scenario


def scenarios() -> list[Scenario]:
    """Every registered scenario, by name."""
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name raises :class:`ScenarioError`."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r} (see `pagesim scenarios`)") from None


def is_file(ref: str) -> bool:
    """Whether a scenario argument names a file: it ends in ``.toml`` or exists."""
    return ref.endswith(".toml") or Path(ref).exists()


def resolve(ref: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path (:func:`is_file`); a
    bad file raises :class:`ScenarioError` (``FILE: key: problem``), a missing one
    ``FileNotFoundError``."""
    if is_file(ref):
        from pagesim.scenarios.spec import load_scenario
        return load_scenario(ref).scenario()
    return get(ref)


def program(name: str, kernel: str, cpus: int | None = None) -> Program:
    """Shorthand: ``resolve(name).program(kernel, cpus)`` (what reproducers call)."""
    return resolve(name).program(kernel, cpus)


_loaded = False


def _load_builtins() -> None:
    # Imported lazily: the allocator scenarios pull in the whole model, and a registry
    # lookup should not fail on an import cycle with the modules that register into it.
    global _loaded
    if not _loaded:
        _loaded = True
        from pagesim.scenarios import allocator, isolation, offline, toys  # noqa: F401
