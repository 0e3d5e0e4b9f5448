# SPDX-License-Identifier: GPL-2.0-only
"""The concurrent runtime: CPUs whose contexts interleave at the model's yields.

A *program* (:class:`Program`) gives, for each CPU, the contexts that start on it: the
first is the CPU's task, any others are further tasks sharing the CPU. Contexts created
while it runs are work items (``queue_work_on``): a context of its own on the target CPU.
Every context is a *thread* of the runtime: a generator plus the op it is waiting to
perform (its *pending* op).

**A step** performs the pending op of one enabled thread, then resumes its generator up
to its next yield (or its end). So a step is the op plus the plain code after it, and
everything other CPUs can observe happens in ops. A work item's first step is a start
event of its own (an empty op that runs the code before its first yield), so queueing it
runs none of its code.

**Enabledness**, as the kernel has it:

* a context on CPU *c* is disabled while another context of *c* is inside a
  non-preemptible section (``local_irq_save``/``preempt_disable`` ... restore/enable):
  the section is *c*'s token, and it excludes only *c*'s other work, never other CPUs;
* ``spin_lock``/``mutex_lock`` of a held lock is disabled (a lock taken twice by the same
  context is a self-deadlock, as in the kernel, and shows up as one);
* ``flush_work`` of an unfinished item is disabled.

Without migration (below) a spinlock does not pin its holder to the CPU: code that
relies on the preemption that ``spin_lock`` disables in the kernel says so with
``preempt_disable`` (or ``local_irq_save``), which is what the model's pcp paths do.
``mutex_lock``, ``mutex_trylock`` and ``flush_work`` inside a section of the context's
own are errors (sleeping in atomic context), as are unbalanced sections and unlocks, and
a context that ends holding a lock or its CPU's token.

**Migration** (``Program.migration``, off by default). A preemptible task may be moved
to another CPU by the scheduler between any two of its instructions (spec §10: "arbitrary
delay, possible CPU migration"; §3 and §4.1: interrupts off, ``preempt_disable`` and
``migrate_disable`` are what prevent it). Which CPU a task runs on matters only where
its code *observes* it: ``this_cpu()`` (``smp_processor_id``, ``this_cpu_ptr``), and the
entry into a non-preemptible section (``local_irq_save``, ``preempt_disable``, and
``spin_lock``, below), which takes that CPU's token and pins the task there. So
migration is modelled there and only there: when a task (never a work item: a kworker
is bound to its CPU, spec §3.3) is about to perform one of those ops while preemptible
(it does not hold its CPU's token), the runtime first gives it a *migration step*: a
choice among the program's CPUs (choice ``k``: the ``k``-th CPU that ``setup`` names,
so the CPU number itself when they are 0..n-1), recorded in the schedule like any choice
and shown in traces as "migrated to cpuN" or "stays on cpuN". Then the op runs as
usual on the chosen CPU: disabled while another context holds that CPU's token, with
that CPU's token in its footprint. Between two observations a preemptible task is on
no CPU in particular: its other steps are enabled whatever sections other contexts are
in, and touch no CPU's token (a scheduler runs it wherever a CPU is free). The model
does not check that one is: with every CPU inside another context's section at once it
still lets the task run, an over-approximation that can add executions but hides none.

Splitting the choice from the op keeps partial-order reduction sound with no new rule:
the migration step touches nothing any other context reads or writes (it is always
enabled, even while another context of the task's CPU is inside a section, which is
when a real scheduler would move it), so its footprint is empty and it commutes with
every other step, while the op after it has the ordinary footprint of the CPU it runs
on. Choosing in the op's own step among the CPUs free at that moment would make the
step depend on every CPU's token, and the order "chosen while CPU *d* was busy" is one
that the race rules (a step races with a section's acquisition, never with its release)
would not reverse.

With migration on, a spinlock pins its holder, as in the kernel, where ``spin_lock``
disables preemption (migration, on PREEMPT_RT): ``spin_lock``, or a ``spin_trylock``
that succeeds, by a context that does not hold its CPU's token takes it, and the unlock
that leaves the context with no spinlock and no section of its own gives it back
(mutexes pin nothing). Without this, a task that migrated onto a CPU whose task holds
``zone->lock`` could take that CPU's token with ``preempt_disable`` and then spin on the
lock forever, a deadlock the kernel cannot have: a CPU never runs another task inside a
spinlock section. Without migration the rule is off, so the footprints and execution
counts of programs written before it stay as they were; those programs give a CPU a
second task only where sections of its own order it.

A state where some thread is unfinished and none is enabled is a **deadlock**.

**Footprints.** Each step records what it touched through its op, as ``(key, kind)``
pairs, for the explorers' dependence relation (:func:`dependent`): ``READ_ONCE`` and
``WRITE_ONCE`` (and ``_IDX``) read or write a field or an element, keyed by the object's
identity (stable within one execution, which is all the explorers compare); lock ops
acquire (blocking, or by a trylock that succeeded), release, or (a trylock that failed)
test the lock; ``local_irq_save`` and friends
acquire and release the CPU's token, and *every other step of a context uses its CPU's
token* (a read): that is what makes a section on CPU *c* ordered with the steps of *c*'s
other contexts, which it disables, while steps on different CPUs, and steps of one CPU's
contexts that touch different memory, stay independent. ``queue_work_on``, a work item's
last step and ``flush_work`` write, write and read the item. ``point`` and ``choose``
touch no memory (only the CPU token, like every step).

**Memory.** Every shared access goes through :class:`Memory`, which implements
sequential consistency by performing it at once. A weaker model (TSO store buffers,
with their flushes as steps of their own) replaces this class and adds those steps; the
model code and its ops stay as they are.

**Properties.** An ``AssertionError`` or :class:`~pagesim.runtime.ops.ModelError` raised
by model code during a step is an ``"assertion"`` violation (any other exception from
model code is an ``"exception"`` violation: under some interleaving the model crashed).
After every step the program's ``checks`` run; a returned string or a raised exception
is an ``"invariant"`` violation. When every thread has finished, ``final_checks`` run
(``"final"``). A deadlock is ``"deadlock"``; an execution still running after
``max_steps`` steps is ``"liveness"`` (bounded liveness: it did not finish in time).

**Determinism.** Given the program (whose ``setup`` must build the same state every time)
and the sequence of ``(thread, choice)`` decisions, an execution is identical step for
step. :class:`Schedule` is that sequence; :func:`replay` re-runs one and reports each
step with the thread's call chain and the values it read and wrote.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pagesim.runtime import ops
from pagesim.runtime.ops import (
    ATOMIC_ADD_IDX,
    ATOMIC_ADD_UNLESS_IDX,
    READ_ONCE,
    READ_ONCE_IDX,
    WRITE_ONCE,
    WRITE_ONCE_IDX,
    ModelError,
    Mutex,
    Op,
    SpinLock,
    Work,
    choose,
    flush_work,
    local_irq_restore,
    local_irq_save,
    mutex_lock,
    point,
    queue_work_on,
    spin_lock,
    spin_trylock,
    spin_unlock,
    this_cpu,
    touch_range,
)

Gen = Generator[Any, Any, Any]
ThreadSpec = Gen | Callable[[], Gen]
Check = Callable[[Any], "str | bool | None"]

#: A key: ``("field", id(obj), attr)``, ``("index", id(seq), i)``, ``("lock", id(lock))``,
#: ``("cpu", c)`` (a CPU's token), ``("work", tid)``, ``("global",)``.
Key = tuple[Any, ...]
Access = tuple[Key, str]
Footprint = tuple[Access, ...]

# Access kinds. The first six are writes for the dependence relation.
WRITE = "w"
#: a blocking acquisition (spin_lock, mutex_lock, local_irq_save...)
ACQUIRE = "acq"
#: a trylock that took the lock: it never blocks, unlike ACQUIRE
TRY_ACQUIRE = "tacq"
RELEASE = "rel"
QUEUE = "queue"
DONE = "done"
READ = "r"
#: a trylock that found the lock held
FAIL = "fail"
#: a step of a context that ran while its CPU's token was free (or its own)
USE = "use"
#: flush_work of a finished item
FLUSH = "flush"
WRITE_KINDS = frozenset({WRITE, ACQUIRE, TRY_ACQUIRE, RELEASE, QUEUE, DONE})

_GLOBAL: Key = ("global",)
#: written by every visible step (see Program.observes)
_OBSERVER: Key = ("observer",)


def dependent(a: Footprint, b: Footprint) -> bool:
    """Whether two steps of different threads conflict: same key, at least one writes.

    Steps of the same thread are always dependent; callers check that first."""
    if not a or not b:
        return False
    kinds = dict(a) if len(a) > 1 else {a[0][0]: a[0][1]}
    for key, kind in b:
        other = kinds.get(key)
        if other is not None and (other in WRITE_KINDS or kind in WRITE_KINDS):
            return True
    return False


class ScheduleError(ValueError):
    """A schedule that does not fit the program (a thread not enabled, a bad choice)."""


# =======================================================================================
# The program interface


@dataclass
class Program:
    """A concurrent scenario: what each CPU runs, and what must hold.

    ``setup()`` returns ``(state, cpus)``: the shared state, and for each CPU number the
    contexts that start on it, each a generator or a zero-argument callable returning one
    (a task running several kernel calls is one generator doing ``yield from`` each in
    turn). A single context may be given without a list. Explorers re-run the program
    from scratch for every execution, so ``setup`` must build a fresh, identical state
    each time and must not depend on anything that varies between calls.

    ``checks`` run after every step and ``final_checks`` once every thread has finished;
    each takes the state and returns ``None`` when it holds or a message when it does not
    (raising ``AssertionError`` is the same). ``max_steps`` bounds an execution: still
    running after that many steps is a liveness violation.

    ``observes(state)`` says what the ``checks`` read, so that partial-order reduction
    stays sound for them. A reduced search explores one order of independent steps, so
    it sees only some of the intermediate states that other orders pass through; that is
    enough for final states, deadlocks and assertions in model code, but not for a
    predicate over several locations checked after every step (Peterson's "not both in
    the critical section": the two writes are independent, the states between them are
    not equivalent). Steps that may change what the checks read are made *visible*: they
    all conflict with one another, so every order of them is explored (the visibility
    condition of partial-order reduction; Peled, CAV 1993). ``observes`` returns
    ``(obj, "field")`` and ``(seq, index)`` pairs (writes to them are visible), locks
    (every step of a context that holds one is visible: the checks read state the lock
    protects, which plain code changes under it) and ``("cpu", n)`` (likewise for the
    interrupts-off sections of CPU ``n``, which protect its per-CPU data). Without
    ``observes``, a program with ``checks`` has every step visible: sound, and no
    reduction.

    ``migration`` lets preemptible tasks move between the CPUs ``setup`` names (see the
    module docstring): off by default, because it multiplies the executions by the CPU
    count at every observation of the CPU.

    ``snapshot(state)``, if given, describes the state as a flat mapping of named facts
    (a pcplist's pages, a lock's owner). A traced execution (:func:`replay`, the
    counterexamples of :func:`pagesim.explore.check`) takes one after every step and
    records in :attr:`StepRecord.changes` the facts that differ; the explorers never call
    it. It is a parameter because the runtime does not know the model (the allocator's
    is :func:`pagesim.model.snapshot.machine_snapshot`).

    ``terminates`` says whether every execution is meant to finish (the default). False
    for a program whose workers loop forever by design: the stateful search
    (:mod:`pagesim.explore.stateful`) then ends a branch that returns to a state on it
    instead of reporting the loop as a liveness violation, and reaching ``max_steps``
    leaves its search incomplete rather than violated. The stateless explorers cannot
    tell a loop from a long run and report liveness at ``max_steps`` either way.
    """

    name: str
    setup: Callable[[], tuple[Any, Mapping[int, ThreadSpec | Sequence[ThreadSpec]]]]
    checks: Sequence[Check] = ()
    final_checks: Sequence[Check] = ()
    max_steps: int = 1000
    description: str = ""
    observes: Callable[[Any], Iterable[Any]] | None = None
    migration: bool = False
    snapshot: Callable[[Any], Mapping[str, object]] | None = None
    terminates: bool = True


@dataclass(frozen=True)
class Schedule:
    """An execution written down: the thread of every step, and the value of every
    ``choose`` (``None`` for other steps). Replaying it on the same program gives the same
    execution, step for step."""

    steps: tuple[tuple[str, int | None], ...]
    program: str = ""

    def __len__(self) -> int:
        return len(self.steps)

    def to_json(self) -> str:
        return json.dumps({"format": "pagesim-schedule", "version": 1,
                           "program": self.program,
                           "steps": [[tid, choice] for tid, choice in self.steps]})

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != "pagesim-schedule":
            raise ScheduleError("not a pagesim schedule")
        if data.get("version") != 1:
            raise ScheduleError(f"unsupported schedule version {data.get('version')!r}")
        steps: list[tuple[str, int | None]] = []
        for item in data["steps"]:
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                    or not (item[1] is None or isinstance(item[1], int))):
                raise ScheduleError(f"bad schedule step {item!r}")
            steps.append((item[0], item[1]))
        return cls(tuple(steps), str(data.get("program", "")))


@dataclass(frozen=True)
class Violation:
    """What went wrong, where: the property, a message, the step index at which it was
    detected (``-1``: while starting the tasks) and the thread that ran that step."""

    property: str
    message: str
    step: int
    tid: str | None = None


class Step(NamedTuple):
    """One executed step, as the explorers see it."""

    tid: str
    choice: int | None
    footprint: Footprint
    #: the previous step's thread was still enabled and this step is another thread's
    preemption: bool
    #: the work item this step created (queue_work_on), if any
    created: str | None


@dataclass(frozen=True)
class StepRecord:
    """One step as :func:`replay` reports it: which context, where in the code, what it
    did and what it saw."""

    index: int
    tid: str
    cpu: int
    op: str
    #: the thread's call chain at the op, outermost first: (function, line)
    chain: tuple[tuple[str, int], ...]
    #: the value the op returned to the model (read, trylock result, choice...), or for a
    #: store the value written
    value: str
    choice: int | None
    preemption: bool
    accesses: tuple[str, ...]
    #: the facts of the program's snapshot that this step changed, as (name, before,
    #: after), ``None`` for a fact absent on that side; empty without a snapshot
    changes: tuple[tuple[str, object, object], ...] = ()

    def where(self) -> str:
        return " > ".join(f"{fn}:{line}" for fn, line in self.chain)


# =======================================================================================
# Memory


class Memory:
    """Shared memory with sequential consistency: every load and store takes effect at
    once, in step order. Every shared access of the runtime goes through here, so a
    weaker memory model can replace this class alone.

    Keys use object identities; the objects are pinned for the life of the execution so
    that an identity is never reused for another object within it.
    """

    __slots__ = ("_labels", "_pinned")

    def __init__(self) -> None:
        self._pinned: dict[int, object] = {}
        self._labels: dict[Key, str] = {}

    def _pin(self, obj: object) -> int:
        ident = id(obj)
        if ident not in self._pinned:
            self._pinned[ident] = obj
        return ident

    def field_key(self, obj: object, attr: str) -> Key:
        key: Key = ("field", self._pin(obj), attr)
        if key not in self._labels:
            self._labels[key] = f"{ops._name(obj)}.{attr}"
        return key

    def index_key(self, seq: object, index: int, label: str) -> Key:
        key: Key = ("index", self._pin(seq), index)
        if label or key not in self._labels:
            self._labels[key] = f"{label or 'mem'}[{index}]"
        return key

    def label(self, key: Key) -> str:
        return self._labels.get(key, "")

    def load(self, obj: object, attr: str) -> Any:
        return getattr(obj, attr)

    def store(self, obj: object, attr: str, value: Any) -> None:
        setattr(obj, attr, value)

    def atomic_idx(self, op: ATOMIC_ADD_IDX | ATOMIC_ADD_UNLESS_IDX) -> Any:
        """A read-modify-write of one element: atomic, and a full barrier in every
        memory model (the kernel's value-returning atomics are)."""
        return op.perform(ops.CURRENT)

    def load_idx(self, seq: Any, index: int) -> Any:
        return seq[index]

    def store_idx(self, seq: Any, index: int, value: Any) -> None:
        seq[index] = value


# =======================================================================================
# Threads


class _start(Op):
    """The pseudo-op a work item waits at before it first runs."""

    __slots__ = ("work",)

    def __init__(self, work: Work) -> None:
        self.work = work

    def describe(self) -> str:
        return f"start {self.work.name}"


class _migrate(choose):
    """The pseudo-op a migratable task waits at before an op that observes its CPU:
    a choice of the CPU it runs on from now on (see the module docstring). ``op`` is the
    op it precedes; ``cpus`` the program's CPUs, indexed by the choice."""

    __slots__ = ("cpus", "op", "source", "target")

    def __init__(self, op: Op, cpus: tuple[int, ...], source: int) -> None:
        super().__init__(len(cpus), "migration")
        self.op = op
        self.cpus = cpus
        self.source = source
        self.target: int | None = None

    def describe(self) -> str:
        before = f"before {self.op.describe()}"
        if self.target is None:
            return f"may migrate from cpu{self.source}, {before}"
        if self.target == self.source:
            return f"stays on cpu{self.target}, {before}"
        return f"migrated to cpu{self.target} from cpu{self.source}, {before}"


class Thread:
    """A context: a task or a work item, on one CPU."""

    __slots__ = ("cpu", "creator_step", "ctx", "gen", "held", "index", "nqueued",
                 "pending", "tid", "work")

    def __init__(self, tid: str, cpu: int, gen: Gen, index: int,
                 work: Work | None = None, creator_step: int | None = None) -> None:
        self.tid = tid
        self.cpu = cpu
        self.gen = gen
        self.index = index
        self.work = work
        self.creator_step = creator_step
        self.pending: Op | None = _start(work) if work is not None else None
        self.held: list[SpinLock] = []
        self.nqueued = 0
        self.ctx = ops.Context()
        self.ctx.cpu = cpu
        self.ctx.task = tid

    @property
    def finished(self) -> bool:
        return self.pending is None

    def chain(self) -> tuple[tuple[str, int], ...]:
        """Function names and lines of the generator stack, outermost first."""
        out: list[tuple[str, int]] = []
        gen: Any = self.gen
        while gen is not None:
            frame = getattr(gen, "gi_frame", None)
            if frame is None:
                break
            out.append((gen.gi_code.co_name, frame.f_lineno))
            gen = getattr(gen, "gi_yieldfrom", None)
        return tuple(out)


def _as_list(spec: ThreadSpec | Sequence[ThreadSpec]) -> list[ThreadSpec]:
    if inspect.isgenerator(spec) or callable(spec):
        return [spec]
    return list(spec)


# =======================================================================================
# Execution


class Execution:
    """One run of a program, advanced one step at a time by an explorer (or by
    :func:`replay`). Nothing in it is random: the caller decides every step."""

    def __init__(self, program: Program, *, max_steps: int | None = None,
                 trace: bool = False, keep_going: bool = False) -> None:
        self.program = program
        #: after an assertion or invariant violation, go on with the other threads (the
        #: failing one stops) instead of ending the execution; ``violation`` keeps the
        #: first. Explorers that count every violating execution need whole executions.
        self.keep_going = keep_going
        #: ended before every thread finished (deadlock, liveness, or a violation)
        self.halted = False
        self.max_steps = program.max_steps if max_steps is None else max_steps
        self.memory = Memory()
        self.threads: dict[str, Thread] = {}
        #: owner (thread id) of each CPU's token while one of its contexts is inside a
        #: non-preemptible section (or, with migration, holds a spinlock)
        self.token: dict[int, str] = {}
        #: the threads inside a local_irq_save/preempt_disable section
        self._sections: set[str] = set()
        #: spinlocks pin their holders (see the module docstring)
        self._lock_pins = program.migration
        self.steps: list[Step] = []
        self.records: list[StepRecord] | None = [] if trace else None
        self.violation: Violation | None = None
        self.finished = False
        self.last_tid: str | None = None
        self._enabled: list[str] = []
        state, cpus = program.setup()
        self.state = state
        #: where a migrating task may go (none: the program does not migrate)
        self._cpus: tuple[int, ...] = (
            tuple(sorted(cpus)) if program.migration and len(cpus) > 1 else ())
        #: the last snapshot (traced executions of programs with one)
        self._snapshot: Mapping[str, object] | None = None
        #: the first one, after setup and the code before each task's first yield
        self.initial_snapshot: Mapping[str, object] = {}
        #: what the checks read (see Program.observes)
        self._observe_all = bool(program.checks) and program.observes is None
        self._observed: set[Key] = set()
        self._observed_locks: set[int] = set()
        self._observed_cpus: set[int] = set()
        if program.checks and program.observes is not None:
            for item in program.observes(state):
                if isinstance(item, SpinLock):
                    self._observed_locks.add(self.memory._pin(item))
                elif isinstance(item, tuple) and len(item) == 2 and item[0] == "cpu":
                    self._observed_cpus.add(item[1])
                elif (isinstance(item, tuple) and len(item) == 2
                      and isinstance(item[1], str)):
                    self._observed.add(self.memory.field_key(item[0], item[1]))
                elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
                    self._observed.add(self.memory.index_key(item[0], item[1], ""))
                else:
                    raise ModelError(f"{program.name}: observes() gave {item!r}; expected "
                                     "(obj, 'field'), (seq, index), a lock or ('cpu', n)")
        try:
            for cpu in sorted(cpus):
                for i, spec in enumerate(_as_list(cpus[cpu])):
                    gen = spec if inspect.isgenerator(spec) else spec()  # type: ignore[operator]
                    if not inspect.isgenerator(gen):
                        raise ModelError(f"cpu{cpu}: context {i} is not a generator "
                                         f"(got {gen!r})")
                    tid = f"cpu{cpu}" if i == 0 else f"cpu{cpu}.{i}"
                    th = Thread(tid, cpu, gen, len(self.threads))
                    self.threads[tid] = th
                    self._resume(th, None)
        except (AssertionError, ModelError) as exc:
            self._fail("assertion", _describe_exc(exc), -1, None, fatal=True)
            return
        except Exception as exc:
            self._fail("exception", _describe_exc(exc), -1, None, fatal=True)
            return
        if trace and program.snapshot is not None:
            self._snapshot = self.initial_snapshot = dict(program.snapshot(state))
        self._after_step(-1, None)

    # -- queries --------------------------------------------------------------------

    @property
    def over(self) -> bool:
        """No further step: finished, or a violation (deadlock and liveness included)."""
        return self.finished or self.halted

    def enabled(self) -> list[str]:
        """The threads that can take a step now, in creation order."""
        return self._enabled

    def is_enabled(self, th: Thread) -> bool:
        op = th.pending
        if op is None:
            return False
        if isinstance(op, _migrate):
            return True  # the scheduler moves a preempted task whatever its CPU runs
        owner = self.token.get(th.cpu)
        if owner is not None and owner != th.tid and not self._floats(th, op):
            return False
        if isinstance(op, spin_lock):
            return op.lock.owner is None
        if isinstance(op, flush_work):
            return op.work.done
        return True

    def pending_choices(self, tid: str) -> int | None:
        """``n`` if the thread's next step is a ``choose(n)``, else ``None``."""
        op = self.threads[tid].pending
        return op.n if isinstance(op, choose) else None

    def pending_footprint(self, tid: str) -> Footprint:
        """What the thread's next step will touch through its op (without running it).

        Exact for every op except the end of a work item, which the step itself adds;
        nothing else can depend on that end before it happens (``flush_work`` waits)."""
        fp = self._op_footprint(self.threads[tid])
        if fp and self._visible(self.threads[tid], fp):
            return (*fp, (_OBSERVER, WRITE))
        return fp

    def _visible(self, th: Thread, fp: Footprint) -> bool:
        if self._observe_all:
            return True
        if self._observed_locks:
            if any(id(lk) in self._observed_locks for lk in th.held):
                return True
            if any(k[0] == "lock" and k[1] in self._observed_locks for k, _ in fp):
                return True
        if th.cpu in self._observed_cpus and (
                self.token.get(th.cpu) == th.tid
                or any(k == ("cpu", th.cpu) and kind != USE for k, kind in fp)):
            return True
        if self._observed:
            return any(kind == WRITE and k in self._observed for k, kind in fp)
        return False

    def _op_footprint(self, th: Thread) -> Footprint:
        op = th.pending
        if op is None or isinstance(op, _migrate):
            return ()
        fp = self._op_footprint_on_cpu(th, op)
        if self._floats(th, op):
            return tuple(a for a in fp if a[1] != USE or a[0][0] != "cpu")
        return fp

    def _floats(self, th: Thread, op: Op) -> bool:
        """Whether ``th`` runs ``op`` on no CPU in particular: a preemptible task, with
        migration, at an op that does not observe its CPU (see the module docstring)."""
        return (bool(self._cpus) and th.work is None and self.token.get(th.cpu) != th.tid
                and not _observes_cpu(op))

    def _op_footprint_on_cpu(self, th: Thread, op: Op) -> Footprint:
        tok: Key = ("cpu", th.cpu)
        if isinstance(op, READ_ONCE):
            return ((self.memory.field_key(op.obj, op.attr), READ), (tok, USE))
        if isinstance(op, WRITE_ONCE):
            return ((self.memory.field_key(op.obj, op.attr), WRITE), (tok, USE))
        if isinstance(op, READ_ONCE_IDX):
            return ((self.memory.index_key(op.seq, op.index, op.label), READ), (tok, USE))
        if isinstance(op, WRITE_ONCE_IDX | ATOMIC_ADD_IDX | ATOMIC_ADD_UNLESS_IDX):
            return ((self.memory.index_key(op.seq, op.index, op.label), WRITE), (tok, USE))
        if isinstance(op, touch_range):
            kind = WRITE if op.write else READ
            return (*((self.memory.index_key(op.seq, i, op.label), kind)
                      for i in range(op.start, op.end)), (tok, USE))
        if isinstance(op, spin_trylock):
            took = op.lock.owner is None
            pin = ACQUIRE if took and self._pins(th, op.lock) else USE
            return ((self._lock_key(op.lock), TRY_ACQUIRE if took else FAIL), (tok, pin))
        if isinstance(op, spin_unlock):
            unpin = RELEASE if self._unpins(th, op.lock) else USE
            return ((self._lock_key(op.lock), RELEASE), (tok, unpin))
        if isinstance(op, spin_lock):
            pin = ACQUIRE if self._pins(th, op.lock) else USE
            return ((self._lock_key(op.lock), ACQUIRE), (tok, pin))
        if isinstance(op, local_irq_save):
            return ((tok, USE if self.token.get(th.cpu) == th.tid else ACQUIRE),)
        if isinstance(op, local_irq_restore):
            return ((tok, USE if self._lock_pinned(th) else RELEASE),)
        if isinstance(op, queue_work_on):
            return ((("work", f"{th.tid}.w{th.nqueued + 1}"), QUEUE), (tok, USE))
        if isinstance(op, flush_work):
            return ((("work", op.work.tid), FLUSH), (tok, USE))
        if isinstance(op, point | choose | this_cpu | _start):
            return ((tok, USE),)
        return ((_GLOBAL, WRITE), (tok, USE))

    def _lock_key(self, lock: SpinLock) -> Key:
        return ("lock", self.memory._pin(lock))

    def _lock_pinned(self, th: Thread) -> bool:
        """Whether a spinlock ``th`` holds pins it to its CPU (with migration only)."""
        return self._lock_pins and any(not isinstance(lk, Mutex) for lk in th.held)

    def _pins(self, th: Thread, lock: SpinLock) -> bool:
        """Whether taking ``lock`` takes ``th``'s CPU token (it is not held yet)."""
        return (self._lock_pins and not isinstance(lock, Mutex)
                and self.token.get(th.cpu) != th.tid)

    def _unpins(self, th: Thread, lock: SpinLock) -> bool:
        """Whether releasing ``lock`` gives back ``th``'s CPU token: its last spinlock,
        outside a section of its own."""
        return (self._lock_pins and not isinstance(lock, Mutex)
                and th.tid not in self._sections and self.token.get(th.cpu) == th.tid
                and [lk for lk in th.held if not isinstance(lk, Mutex)] == [lock])

    def schedule(self) -> Schedule:
        return Schedule(tuple((s.tid, s.choice) for s in self.steps), self.program.name)

    def preemptions(self) -> int:
        return sum(1 for s in self.steps if s.preemption)

    def describe_thread(self, tid: str) -> str:
        th = self.threads[tid]
        where = " > ".join(f"{fn}:{line}" for fn, line in th.chain())
        op = th.pending.describe() if th.pending is not None else "finished"
        return f"{tid} (cpu{th.cpu}) at {op} [{where}]"

    # -- the step -------------------------------------------------------------------

    def step(self, tid: str, choice: int | None = None) -> Step:
        """Perform ``tid``'s pending op and run it to its next yield."""
        if self.over:
            why = "finished" if self.finished else \
                f"ended by {self.violation.property if self.violation else 'a violation'}"
            raise ScheduleError(f"step {len(self.steps)}: the execution is over ({why})")
        th = self.threads.get(tid)
        if th is None or tid not in self._enabled:
            raise ScheduleError(f"step {len(self.steps)}: thread {tid} is not enabled "
                                f"(enabled: {', '.join(self._enabled) or 'none'})")
        op = th.pending
        assert op is not None
        index = len(self.steps)
        prev = self.last_tid
        preemption = prev is not None and prev != tid and prev in self._enabled
        if isinstance(op, choose):
            if choice is None:
                choice = 0
            if not 0 <= choice < op.n:
                raise ScheduleError(f"step {index}: choice {choice} out of range for "
                                    f"{op.describe()}")
        elif choice is not None:
            raise ScheduleError(f"step {index}: a choice for {op.describe()}, not a choose")
        chain = th.chain() if self.records is not None else ()
        footprint = self.pending_footprint(tid)
        created: str | None = None
        value: Any = None
        shown: Any = None
        error: tuple[str, str] | None = None
        # Plain helpers the model calls may ask the sequential context which CPU runs.
        current = ops.CURRENT
        saved = (current.cpu, current.irqs_off)
        current.cpu = th.cpu
        current.irqs_off = tid in self._sections
        try:
            value, shown, created = self._perform(th, op, choice, index)
            th.ctx.irqs_off = current.irqs_off = tid in self._sections
            if value is not _MIGRATED and self._resume(th, value):
                footprint = (*footprint, (("work", tid), DONE))
        except (AssertionError, ModelError) as exc:
            error = ("assertion", _describe_exc(exc))
        except Exception as exc:
            error = ("exception", _describe_exc(exc))
        finally:
            current.cpu, current.irqs_off = saved
        step = Step(tid, choice, footprint, preemption, created)
        self.steps.append(step)
        self.last_tid = tid
        if self.records is not None:
            self.records.append(StepRecord(
                index, tid, th.cpu, op.describe(), chain, _show(shown), choice, preemption,
                tuple(f"{kind} {self._key_label(key)}" for key, kind in footprint),
                self._changes()))
        if error is not None:
            if th.pending is not None:  # the op failed: the thread cannot go on
                th.pending = None
                th.gen.close()
            self._fail(error[0], error[1], index, tid)
        if not self.halted:
            self._after_step(index, tid)
        return step

    def _perform(self, th: Thread, op: Op, choice: int | None,
                 index: int) -> tuple[Any, Any, str | None]:
        """Execute one op for ``th``: (value for the model, value to show, created tid)."""
        mem = self.memory
        if isinstance(op, _migrate):
            assert choice is not None
            op.target = th.cpu = th.ctx.cpu = ops.CURRENT.cpu = op.cpus[choice]
            th.pending = op.op  # the op itself is the next step, on the chosen CPU
            return _MIGRATED, None, None
        if isinstance(op, READ_ONCE):
            v = mem.load(op.obj, op.attr)
            return v, v, None
        if isinstance(op, WRITE_ONCE):
            mem.store(op.obj, op.attr, op.value)
            return None, op.value, None
        if isinstance(op, READ_ONCE_IDX):
            v = mem.load_idx(op.seq, op.index)
            return v, v, None
        if isinstance(op, WRITE_ONCE_IDX):
            mem.store_idx(op.seq, op.index, op.value)
            return None, op.value, None
        if isinstance(op, ATOMIC_ADD_IDX | ATOMIC_ADD_UNLESS_IDX):
            v = mem.atomic_idx(op)
            return v, v, None
        if isinstance(op, spin_trylock):
            if op.lock.owner is not None:
                return False, False, None
            if isinstance(op, ops.mutex_trylock):
                self._might_sleep(th, op)
            if self._pins(th, op.lock):
                self.token[th.cpu] = th.tid
            op.lock.owner = th.tid
            th.held.append(op.lock)
            return True, True, None
        if isinstance(op, spin_lock):
            if isinstance(op, mutex_lock):
                self._might_sleep(th, op)
            if self._pins(th, op.lock):
                self.token[th.cpu] = th.tid
            op.lock.owner = th.tid
            th.held.append(op.lock)
            return None, None, None
        if isinstance(op, spin_unlock):
            owner = op.lock.owner
            if owner is None:
                raise ModelError(f"unlock of {op.lock.name}, which is not held")
            if owner != th.tid:
                raise ModelError(f"{th.tid} unlocks {op.lock.name}, held by {owner}")
            unpin = self._unpins(th, op.lock)
            op.lock.owner = None
            th.held.remove(op.lock)
            if unpin:
                del self.token[th.cpu]
            return None, None, None
        if isinstance(op, local_irq_save):
            if th.tid in self._sections:
                raise ModelError(f"{op.describe()} nested on cpu{th.cpu} ({th.tid})")
            self._sections.add(th.tid)
            self.token[th.cpu] = th.tid
            return th.cpu, th.cpu, None
        if isinstance(op, local_irq_restore):
            if th.tid not in self._sections or self.token.get(th.cpu) != th.tid:
                raise ModelError(f"{op.describe()} on cpu{th.cpu} outside a section "
                                 f"of {th.tid}")
            self._sections.discard(th.tid)
            if not self._lock_pinned(th):
                del self.token[th.cpu]
            return None, None, None
        if isinstance(op, this_cpu):
            return th.cpu, th.cpu, None
        if isinstance(op, point | _start):
            return None, None, None
        if isinstance(op, choose):
            return choice, choice, None
        if isinstance(op, queue_work_on):
            th.nqueued += 1
            tid = f"{th.tid}.w{th.nqueued}"
            work = Work(op.cpu, op.fn, op.args)
            work.tid = tid
            gen = op.fn(*op.args)
            if not inspect.isgenerator(gen):
                raise ModelError(f"queue_work_on: {work.name} is not a generator function")
            self.threads[tid] = Thread(tid, op.cpu, gen, len(self.threads), work, index)
            return work, work, tid
        if isinstance(op, flush_work):
            self._might_sleep(th, op)
            if op.work.tid is None or op.work.tid not in self.threads:
                raise ModelError(f"{op.describe()}: not queued in this execution")
            return None, None, None
        # An op this runtime has no rule for: its sequential semantics, treated as a
        # write of everything (so the explorers never reorder it).
        v = op.perform(th.ctx)
        return v, v, None

    def _might_sleep(self, th: Thread, op: Op) -> None:
        if self.token.get(th.cpu) == th.tid:
            raise ModelError(f"{op.describe()} in atomic context on cpu{th.cpu} "
                             f"({th.tid}): sleeping with interrupts or preemption off")

    def _resume(self, th: Thread, value: Any) -> bool:
        """Run the thread to its next yield; True if it finished a work item."""
        try:
            nxt = th.gen.send(value)
        except StopIteration:
            th.pending = None
            if self.token.get(th.cpu) == th.tid:
                raise ModelError(f"{th.tid} returned with interrupts/preemption off on "
                                 f"cpu{th.cpu}") from None
            if th.held:
                raise ModelError(f"{th.tid} finished holding "
                                 f"{', '.join(lk.name for lk in th.held)}") from None
            if th.work is not None:
                th.work.done = True
                return True
            return False
        if not isinstance(nxt, Op):
            th.pending = None
            raise ModelError(f"{th.tid} yielded {nxt!r}, which is not a runtime op")
        if (self._cpus and th.work is None and self.token.get(th.cpu) != th.tid
                and _observes_cpu(nxt)):
            nxt = _migrate(nxt, self._cpus, th.cpu)
        th.pending = nxt
        return False

    def _changes(self) -> tuple[tuple[str, object, object], ...]:
        """The facts of the program's snapshot that the last step changed."""
        before = self._snapshot
        if before is None or self.program.snapshot is None:
            return ()
        after = dict(self.program.snapshot(self.state))
        self._snapshot = after
        return snapshot_diff(before, after)

    def _after_step(self, index: int, tid: str | None) -> None:
        if self.violation is None:
            for chk in self.program.checks:
                msg = _run_check(chk, self.state)
                if msg is not None:
                    self._fail("invariant", msg, index, tid)
                    if self.halted:
                        return
                    break
        self._enabled = [t for t, th in self.threads.items() if self.is_enabled(th)]
        if self._enabled:
            if len(self.steps) >= self.max_steps:
                running = [self.describe_thread(t) for t, th in self.threads.items()
                           if not th.finished]
                self._fail("liveness", f"not finished after {self.max_steps} steps: "
                           + "; ".join(running), index, tid, fatal=True)
            return
        blocked = [t for t, th in self.threads.items() if not th.finished]
        if blocked:
            self._fail("deadlock", "every unfinished context is blocked: "
                       + "; ".join(self.describe_thread(t) for t in blocked), index, tid,
                       fatal=True)
            return
        self.finished = True
        if self.violation is None:
            for chk in self.program.final_checks:
                msg = _run_check(chk, self.state)
                if msg is not None:
                    self._fail("final", msg, index, tid)
                    return

    def _fail(self, prop: str, message: str, index: int, tid: str | None, *,
              fatal: bool = False) -> None:
        if self.violation is None:
            self.violation = Violation(prop, message, index, tid)
        if fatal or not self.keep_going:
            self.halted = True
            self._enabled = []

    def _key_label(self, key: Key) -> str:
        if key[0] == "cpu":
            return f"cpu{key[1]}"
        if key[0] == "lock":
            obj = self.memory._pinned.get(key[1])
            return getattr(obj, "name", "lock")
        if key[0] == "work":
            return f"work {key[1]}"
        return self.memory.label(key) or str(key[0])


def _observes_cpu(op: Op) -> bool:
    """The ops that read the CPU or pin the task to it: where a task may migrate."""
    return isinstance(op, this_cpu | local_irq_save) or (
        isinstance(op, spin_lock | spin_trylock) and not isinstance(op.lock, Mutex))


#: what performing a migration step gives back: the task is not resumed, its next step
#: is the op the migration preceded
_MIGRATED = object()


def snapshot_diff(before: Mapping[str, object],
                  after: Mapping[str, object]) -> tuple[tuple[str, object, object], ...]:
    """``(name, before, after)`` for every fact that differs, in ``after``'s order then
    the facts that disappeared (``None`` stands for absent)."""
    out = [(name, before.get(name), value) for name, value in after.items()
           if name not in before or before[name] != value]
    out.extend((name, value, None) for name, value in before.items() if name not in after)
    return tuple(out)


def _run_check(chk: Check, state: Any) -> str | None:
    name = getattr(chk, "__name__", "check")
    try:
        msg = chk(state)
    except Exception as exc:
        return f"{name}: {_describe_exc(exc)}"
    if msg is None or msg is True:
        return None
    if msg is False:
        return f"{name} failed"
    return f"{name}: {msg}"


def _describe_exc(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _show(value: Any) -> str:
    if value is None:
        return ""
    return repr(value)


# =======================================================================================
# Replay


@dataclass
class Replay:
    """What :func:`replay` returns: the step records, the final state, and how the
    execution ended."""

    records: list[StepRecord]
    state: Any
    violation: Violation | None
    finished: bool
    steps: list[Step] = field(default_factory=list)
    #: the program's snapshot before the first step (empty without one); each record's
    #: ``changes`` take it from there
    initial: Mapping[str, object] = field(default_factory=dict)


def replay(program: Program, schedule: Schedule | Iterable[tuple[str, int | None]], *,
           on_step: Callable[[StepRecord, Any], None] | None = None,
           max_steps: int | None = None) -> Replay:
    """Re-run ``schedule`` on ``program`` step by step.

    ``on_step(record, state)`` is called after each step with the step's record (thread,
    CPU, op, call chain, value read or written) and the state as that step left it.
    Steps after the execution ended (a violation) are an error, as is a thread that is
    not enabled where the schedule runs it: the schedule does not belong to this program.
    ``max_steps`` defaults to the program's (or the schedule's length, if longer); a
    liveness violation found under a smaller step bound replays as one with that bound.
    """
    steps = schedule.steps if isinstance(schedule, Schedule) else tuple(schedule)
    limit = max(program.max_steps, len(steps)) if max_steps is None else max_steps
    ex = Execution(program, max_steps=limit, trace=True)
    assert ex.records is not None
    for tid, choice in steps:
        ex.step(tid, choice)
        if on_step is not None:
            on_step(ex.records[-1], ex.state)
    return Replay(ex.records, ex.state, ex.violation, ex.finished, ex.steps,
                  ex.initial_snapshot)
