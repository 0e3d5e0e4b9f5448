# SPDX-License-Identifier: GPL-2.0-only
"""The primitives model code yields: every place where another CPU can interleave.

A model function is a generator. Each ``yield OP(...)`` is a scheduling point: the
runtime performs ``OP`` (a lock acquisition, a lockless load or store of a shared field,
disabling interrupts on the current CPU, a nondeterministic choice) as one atomic step,
and between two yields the function runs without interruption. So the yields are the
complete list of what other CPUs can observe or change, and they carry the kernel's
reason in their type.

Shared-memory accesses that race (``READ_ONCE``/``WRITE_ONCE`` and plain loads/stores
of fields read or written by other CPUs without a common lock) go through this one layer,
so a weaker memory model can later be added by changing how the runtime performs them,
without touching the model.

Each op has two executions:

* ``perform(ctx)``: used by the interpreters in :mod:`pagesim.runtime.sequential` (and the
  explorers), which drive the generators step by step;
* ``fast``: a plain function with the same arguments, used by the sequential variant that
  :mod:`pagesim.runtime.kernelfn` compiles from the same source, where a whole kernel call
  runs alone. Ops marked ``DROP_IN_FAST`` (lock and interrupt bookkeeping whose value is
  unused) are removed from that variant altogether, and ``READ_ONCE``/``WRITE_ONCE`` are
  inlined into attribute accesses.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, ClassVar


class ModelError(RuntimeError):
    """The model misused a primitive (double lock, unlock of a free lock, ...)."""


class Context:
    """Which CPU the code that is running now runs on.

    The sequential runtime sets it before each kernel call; ops that need "this CPU"
    (``local_irq_save``, ``this_cpu``) read it.
    """

    __slots__ = ("cpu", "irqs_off", "task")

    def __init__(self) -> None:
        self.cpu = 0
        self.irqs_off = False
        self.task: object = None


#: The context of the sequential runtime (one thread of control at a time).
CURRENT = Context()


class SpinLock:
    """A kernel spinlock (``zone->lock``, ``pcp->lock``): held by at most one context."""

    __slots__ = ("name", "owner")

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: object = None

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Mutex(SpinLock):
    """A sleeping lock (``pcp_batch_high_lock``, ``pcpu_drain_mutex``)."""

    __slots__ = ()


class Op:
    """Base of every primitive. ``perform`` executes it in the current context."""

    __slots__ = ()
    DROP_IN_FAST: ClassVar[bool] = False
    #: an expression the sequential variant uses instead of calling ``fast`` (no args)
    FAST_EXPR: ClassVar[str | None] = None
    fast: ClassVar[Callable[..., Any]]

    def perform(self, ctx: Context) -> Any:
        raise ModelError(f"{type(self).__name__} has no sequential semantics")

    def describe(self) -> str:
        return type(self).__name__


class READ_ONCE(Op):
    """A lockless load of ``obj.attr`` that another CPU may write concurrently."""

    __slots__ = ("attr", "obj")

    def __init__(self, obj: object, attr: str) -> None:
        self.obj = obj
        self.attr = attr

    def perform(self, ctx: Context) -> Any:
        return getattr(self.obj, self.attr)

    @staticmethod
    def fast(obj: object, attr: str) -> Any:
        return getattr(obj, attr)

    def describe(self) -> str:
        return f"READ_ONCE({_name(self.obj)}.{self.attr})"


class WRITE_ONCE(Op):
    """A lockless store to ``obj.attr`` that another CPU may read concurrently."""

    __slots__ = ("attr", "obj", "value")

    def __init__(self, obj: object, attr: str, value: Any) -> None:
        self.obj = obj
        self.attr = attr
        self.value = value

    def perform(self, ctx: Context) -> None:
        setattr(self.obj, self.attr, self.value)

    @staticmethod
    def fast(obj: object, attr: str, value: Any) -> None:
        setattr(obj, attr, value)

    def describe(self) -> str:
        return f"WRITE_ONCE({_name(self.obj)}.{self.attr}, {self.value!r})"


class READ_ONCE_IDX(Op):
    """A lockless load of ``seq[index]`` (a pageblock's bits, a remote CPU's counter)."""

    __slots__ = ("index", "label", "seq")

    def __init__(self, seq: Any, index: int, label: str = "") -> None:
        self.seq = seq
        self.index = index
        self.label = label

    def perform(self, ctx: Context) -> Any:
        return self.seq[self.index]

    @staticmethod
    def fast(seq: Any, index: int, label: str = "") -> Any:
        return seq[index]

    def describe(self) -> str:
        return f"READ_ONCE({self.label or 'mem'}[{self.index}])"


class WRITE_ONCE_IDX(Op):
    """A lockless (or cmpxchg) store to ``seq[index]``."""

    __slots__ = ("index", "label", "seq", "value")

    def __init__(self, seq: Any, index: int, value: Any, label: str = "") -> None:
        self.seq = seq
        self.index = index
        self.value = value
        self.label = label

    def perform(self, ctx: Context) -> None:
        self.seq[self.index] = self.value

    @staticmethod
    def fast(seq: Any, index: int, value: Any, label: str = "") -> None:
        seq[index] = value

    def describe(self) -> str:
        return f"WRITE_ONCE({self.label or 'mem'}[{self.index}], {self.value!r})"


class ATOMIC_ADD_IDX(Op):
    """An atomic read-modify-write ``seq[index] += delta`` returning the new value: the
    kernel's ``atomic_add_return`` family (``page_ref_dec_and_test`` is a delta of -1
    tested for 0). Other CPUs see the old or the new value, never a torn one."""

    __slots__ = ("delta", "index", "label", "seq")

    def __init__(self, seq: Any, index: int, delta: int, label: str = "") -> None:
        self.seq = seq
        self.index = index
        self.delta = delta
        self.label = label

    def perform(self, ctx: Context) -> Any:
        value = self.seq[self.index] + self.delta
        self.seq[self.index] = value
        return value

    @staticmethod
    def fast(seq: Any, index: int, delta: int, label: str = "") -> Any:
        value = seq[index] + delta
        seq[index] = value
        return value

    def describe(self) -> str:
        return f"atomic_add_return({self.delta}, {self.label or 'mem'}[{self.index}])"


class ATOMIC_ADD_UNLESS_IDX(Op):
    """``atomic_add_unless(&seq[index], delta, unless)``: add unless the value is
    ``unless``; returns whether it added (``get_page_unless_zero`` is delta 1, unless 0:
    a reference can only be taken on a page that still has one)."""

    __slots__ = ("delta", "index", "label", "seq", "unless")

    def __init__(self, seq: Any, index: int, delta: int, unless: int,
                 label: str = "") -> None:
        self.seq = seq
        self.index = index
        self.delta = delta
        self.unless = unless
        self.label = label

    def perform(self, ctx: Context) -> bool:
        return ATOMIC_ADD_UNLESS_IDX.fast(self.seq, self.index, self.delta, self.unless)

    @staticmethod
    def fast(seq: Any, index: int, delta: int, unless: int, label: str = "") -> bool:
        if seq[index] == unless:
            return False
        seq[index] += delta
        return True

    def describe(self) -> str:
        return (f"atomic_add_unless({self.label or 'mem'}[{self.index}], {self.delta}, "
                f"{self.unless})")


class touch_range(Op):
    """Model-only: the plain code that follows this op, in the same step, reads (or,
    with ``write``, writes) ``seq[start:end]``.

    For the scans that read many pages' fields at once, where the kernel reads them one
    by one without a lock (migration's scan of a range, has_unmovable_pages): the model
    does the whole scan in one step, and this op gives that step the footprint of
    everything it reads, so partial-order reduction orders it against the other CPUs'
    accesses to the same pages. It does nothing itself and is dropped from the
    sequential variant.
    """

    __slots__ = ("end", "label", "seq", "start", "write")
    DROP_IN_FAST = True

    def __init__(self, seq: Any, start: int, end: int, label: str = "",
                 write: bool = False) -> None:
        self.seq = seq
        self.start = start
        self.end = end
        self.label = label
        self.write = write

    def perform(self, ctx: Context) -> None:
        return None

    def describe(self) -> str:
        what = "write" if self.write else "read"
        return f"{what} {self.label or 'mem'}[{self.start}:{self.end}]"


class _LockOp(Op):
    __slots__ = ("lock",)

    def __init__(self, lock: SpinLock) -> None:
        self.lock = lock

    def describe(self) -> str:
        return f"{type(self).__name__}(&{self.lock.name})"


class spin_lock(_LockOp):
    """Acquire a spinlock; the runtime blocks the CPU while another context holds it."""

    __slots__ = ()
    DROP_IN_FAST = True

    def perform(self, ctx: Context) -> None:
        if self.lock.owner is not None:
            raise ModelError(f"{self.lock.name} already held by {self.lock.owner!r} "
                             "(a sequential run would spin forever)")
        self.lock.owner = ctx.task if ctx.task is not None else ctx.cpu


class spin_unlock(_LockOp):
    __slots__ = ()
    DROP_IN_FAST = True

    def perform(self, ctx: Context) -> None:
        if self.lock.owner is None:
            raise ModelError(f"unlock of {self.lock.name}, which is not held")
        self.lock.owner = None


class spin_trylock(_LockOp):
    """Try once; returns whether the lock was taken (6.x pcp->lock). A sequential run
    has no other holder, so its variant is simply True."""

    __slots__ = ()
    FAST_EXPR = "True"

    def perform(self, ctx: Context) -> bool:
        if self.lock.owner is not None:
            return False
        self.lock.owner = ctx.task if ctx.task is not None else ctx.cpu
        return True

    @staticmethod
    def fast(lock: SpinLock) -> bool:
        return True


class mutex_lock(spin_lock):
    """Acquire a sleeping lock (blocks the task, not the CPU)."""

    __slots__ = ()


class mutex_unlock(spin_unlock):
    __slots__ = ()


class mutex_trylock(spin_trylock):
    __slots__ = ()


class local_irq_save(Op):
    """Disable interrupts on the CPU the task runs on and return that CPU.

    From here until ``local_irq_restore`` the task cannot migrate and nothing else runs
    on this CPU (drain work, other tasks). It does not exclude other CPUs: they
    interleave freely and meet this CPU only through the yields inside the section.
    """

    __slots__ = ()
    FAST_EXPR = "ops.CURRENT.cpu"

    def perform(self, ctx: Context) -> int:
        if ctx.irqs_off:
            raise ModelError(f"local_irq_save nested on cpu{ctx.cpu}")
        ctx.irqs_off = True
        return ctx.cpu

    @staticmethod
    def fast() -> int:
        return CURRENT.cpu


class local_irq_restore(Op):
    __slots__ = ()
    DROP_IN_FAST = True

    def perform(self, ctx: Context) -> None:
        if not ctx.irqs_off:
            raise ModelError(f"local_irq_restore on cpu{ctx.cpu} with interrupts on")
        ctx.irqs_off = False


class preempt_disable(local_irq_save):
    """Pin the task to its CPU (6.x pcp paths); returns the CPU. Excludes other tasks on
    this CPU but, unlike interrupts-off, not interrupt handlers."""

    __slots__ = ()


class preempt_enable(local_irq_restore):
    __slots__ = ()


class this_cpu(Op):
    """The CPU the task runs on now (``smp_processor_id``, ``this_cpu_ptr``).

    In preemptible code the answer may be stale by the next yield: with
    ``Program.migration`` the concurrent runtime moves a preemptible task to any CPU
    before its next ``this_cpu`` or section entry, so code that keeps the value across a
    preemption point and then uses it inside a section touches another CPU's data."""

    __slots__ = ()
    FAST_EXPR = "ops.CURRENT.cpu"

    def perform(self, ctx: Context) -> int:
        return ctx.cpu

    @staticmethod
    def fast() -> int:
        return CURRENT.cpu


class point(Op):
    """A scheduling point with no memory effect: preemption, ``cond_resched()``, the
    unbounded delay between a free's prepare and commit halves. ``why`` is printed in
    counterexamples."""

    __slots__ = ("why",)
    DROP_IN_FAST = True

    def __init__(self, why: str) -> None:
        self.why = why

    def perform(self, ctx: Context) -> None:
        return None

    def describe(self) -> str:
        return f"point({self.why})"


class choose(Op):
    """A nondeterministic choice among ``n`` alternatives (0..n-1).

    The explorers branch on it; the sequential runtime asks its chooser (default: 0).
    """

    __slots__ = ("n", "why")

    def __init__(self, n: int, why: str = "") -> None:
        self.n = n
        self.why = why

    def perform(self, ctx: Context) -> int:
        return CHOOSER(self.n, self.why)

    @staticmethod
    def fast(n: int, why: str = "") -> int:
        return CHOOSER(n, why)

    def describe(self) -> str:
        return f"choose({self.n}{', ' + self.why if self.why else ''})"


class Work:
    """A work item: the handle ``queue_work_on`` returns and ``flush_work`` waits on.

    The concurrent runtime runs ``fn(*args)`` as a context of its own on ``cpu`` (a
    kworker) and sets ``done`` when it returns; the sequential runtime runs it at once, so
    its handles are always done.
    """

    __slots__ = ("args", "cpu", "done", "fn", "tid")

    def __init__(self, cpu: int, fn: Callable[..., Generator[Any, Any, Any]],
                 args: tuple[Any, ...]) -> None:
        self.cpu = cpu
        self.fn = fn
        self.args = args
        self.done = False
        #: the runtime's name for the context running it (the concurrent runtime sets it)
        self.tid: str | None = None

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "work")

    def __repr__(self) -> str:
        return f"<work {self.name} on cpu{self.cpu}{' done' if self.done else ''}>"


def _drive(gen: Generator[Any, Any, Any], ctx: Context) -> Any:
    """Run a generator to its end, performing each op in ``ctx`` (sequential semantics)."""
    value: Any = None
    while True:
        try:
            op = gen.send(value)
        except StopIteration as stop:
            return stop.value
        if not isinstance(op, Op):
            raise ModelError(f"work yielded {op!r}, which is not a runtime op")
        value = op.perform(ctx)


def _run_work_now(work: Work, ctx: Context, compiled: bool) -> None:
    """The sequential meaning of queueing: the item runs to completion at once on its
    CPU, outside the caller's interrupts-off section, as if the CPU had switched to the
    kworker and back."""
    saved = (ctx.cpu, ctx.irqs_off, ctx.task)
    ctx.cpu, ctx.irqs_off, ctx.task = work.cpu, False, work
    try:
        fast_fn = getattr(work.fn, "fast", None) if compiled else None
        if fast_fn is not None:
            fast_fn(*work.args)
        else:
            _drive(work.fn(*work.args), ctx)
        if ctx.irqs_off:
            raise ModelError(f"work {work.name} returned with interrupts off on cpu{work.cpu}")
    finally:
        ctx.cpu, ctx.irqs_off, ctx.task = saved
    work.done = True


class queue_work_on(Op):
    """Queue ``fn(*args)`` (a generator function, usually ``@kernel``) on ``cpu``'s
    workqueue and return its :class:`Work` handle (drain_all_pages, lru_add_drain_all).

    In the concurrent runtime the item becomes a context of its own on ``cpu``: it runs
    between that CPU's non-preemptible sections and interleaves with everything else. The
    sequential runtime runs it to completion immediately.
    """

    __slots__ = ("args", "cpu", "fn")

    def __init__(self, cpu: int, fn: Callable[..., Generator[Any, Any, Any]],
                 *args: Any) -> None:
        self.cpu = cpu
        self.fn = fn
        self.args = args

    def perform(self, ctx: Context) -> Work:
        work = Work(self.cpu, self.fn, self.args)
        _run_work_now(work, ctx, compiled=False)
        return work

    @staticmethod
    def fast(cpu: int, fn: Callable[..., Generator[Any, Any, Any]], *args: Any) -> Work:
        work = Work(cpu, fn, args)
        _run_work_now(work, CURRENT, compiled=True)
        return work

    def describe(self) -> str:
        return f"queue_work_on({self.cpu}, {getattr(self.fn, '__name__', 'work')})"


class flush_work(Op):
    """Wait until a queued work item has finished (the concurrent runtime blocks the
    caller until then; a sequential run has always finished it already)."""

    __slots__ = ("work",)

    def __init__(self, work: Work) -> None:
        self.work = work

    def perform(self, ctx: Context) -> None:
        if not self.work.done:
            raise ModelError(f"flush_work of {self.work!r}: a sequential run would wait "
                             "forever")

    @staticmethod
    def fast(work: Work) -> None:
        if not work.done:
            raise ModelError(f"flush_work of {work!r}: a sequential run would wait forever")

    def describe(self) -> str:
        return f"flush_work({self.work.name}@cpu{self.work.cpu})"


def _first(n: int, why: str) -> int:
    return 0


#: How the sequential runtime resolves ``choose``; tests and the simulator replace it.
CHOOSER: Callable[[int, str], int] = _first


def set_chooser(fn: Callable[[int, str], int] | None) -> None:
    global CHOOSER
    CHOOSER = fn if fn is not None else _first


def _name(obj: object) -> str:
    return getattr(obj, "name", None) or type(obj).__name__


def _nothing(*args: object, **kwargs: object) -> None:
    return None


# Ops dropped from the sequential variant still need a ``fast`` for code that calls it
# directly (tests, tools); it does nothing, as the dropped yield does.
for _cls in (spin_lock, spin_unlock, local_irq_restore, preempt_enable, point):
    _cls.fast = staticmethod(_nothing)
