# SPDX-License-Identifier: GPL-2.0-only
"""Exhaustive search: Source-DPOR with sleep sets, and plain DFS without reduction.

**Source-DPOR** (Abdulla, Aronis, Jonsson, Sagonas, "Optimal Dynamic Partial Order
Reduction", POPL 2014, Algorithm 1) explores at least one execution of every
Mazurkiewicz trace of a terminating program: two executions are equivalent when they
order every pair of dependent steps the same way, and equivalent executions reach the
same state and the same violations. Dependence is read off the footprints the executor
records for each step (:func:`pagesim.runtime.executor.dependent`), so it is what the
steps actually touched in this execution, not what they might touch.

The search is stateless: an execution is re-run from ``setup()`` for every branch (Python
generators cannot be copied), replaying the decisions of the current branch. After each
execution the races are computed over its steps, with vector clocks of the
happens-before order, and for each race ``e < e'`` the execution
``notdep(e).e'`` (what could run before ``e`` instead) gives the set of its first threads
(*initials*): if none of them is in the backtrack set of the node before ``e``, one is
added. Sleep sets (Godefroid 1996) stop the branches that only reorder independent
steps already explored.

Blocking needs care that the paper's model leaves out: a lock acquisition cannot move
before the release that enabled it, and a context cannot run inside another context's
interrupts-off section on its CPU. So, as in Flanagan and Godefroid's DPOR (POPL 2005), a
race needs the two steps to be *co-enabled* (:data:`RACE`): an acquisition races with the
previous acquisition of the lock, not with the release between them; a failed trylock
races with the acquisition that made it fail and with the release after it; a step of
a context races with the previous section of another context on its CPU, and a section
with the earlier steps of the other contexts. Release-to-acquire, section-end-to-step and
work-completion-to-flush dependences still order the execution (they are in the
happens-before relation) but are never reversed. At the end of an execution, the
pending steps of threads that are blocked count as steps too, so that the race that
would unblock them is reversed (a deadlocked run still leads to its other orders).

Nondeterministic choices are branched exhaustively wherever a thread makes one: a
``choose(n)`` step of a thread explored at a node is explored with each of its ``n``
values before the thread counts as done there.

**Plain DFS** explores every sequence of enabled threads and every choice value: the
unreduced search, and the oracle the tests compare DPOR with.
"""

from __future__ import annotations

from pagesim.explore.common import (
    Bounds,
    Budget,
    DecisionNode,
    OptionNode,
    Outcome,
    backtrack_options,
    new_execution,
)
from pagesim.runtime.executor import (
    ACQUIRE,
    DONE,
    FAIL,
    FLUSH,
    READ,
    RELEASE,
    TRY_ACQUIRE,
    USE,
    WRITE,
    WRITE_KINDS,
    Execution,
    Footprint,
    Key,
    Program,
    dependent,
)

#: Which earlier accesses (by kind) a later access of each kind races with, per class of
#: key: the co-enabled, dependent pairs. Memory: read-write, write-read, write-write.
#: ``ACQUIRE`` as an earlier kind means the last acquisition of either kind. A blocking
#: acquisition races with the previous acquisition but not with the release that enabled
#: it; a successful trylock also races with that release (before it, the trylock was
#: enabled, and fails).
RACE: dict[str, dict[str, tuple[str, ...]]] = {
    "memory": {READ: (WRITE,), WRITE: (READ, WRITE)},
    "lock": {ACQUIRE: (ACQUIRE,), TRY_ACQUIRE: (ACQUIRE, RELEASE), FAIL: (ACQUIRE,),
             RELEASE: (FAIL,)},
    "cpu": {ACQUIRE: (ACQUIRE, USE), USE: (ACQUIRE,)},
    "work": {},
}


def _key_class(key: Key) -> str:
    kind = key[0]
    if kind in ("lock", "cpu", "work"):
        return str(kind)
    return "memory"


class _KeyState:
    """Per key, during the analysis of one execution: the last write-kind access, the
    last acquisition, and the latest read-kind access of each thread since that write."""

    __slots__ = ("last_acq", "last_w", "last_w_kind", "reads")

    def __init__(self) -> None:
        self.last_w = -1
        self.last_w_kind = ""
        self.last_acq = -1
        self.reads: dict[int, int] = {}


class _Node(DecisionNode):
    """A node of the exploration tree: the state after some prefix of decisions."""

    __slots__ = ("backtrack", "done", "enabled", "sleep", "tid")

    def __init__(self, enabled: list[str], sleep: set[str]) -> None:
        super().__init__()
        self.enabled = enabled
        #: threads whose next step is redundant here (inherited along the branch)
        self.sleep = sleep
        self.backtrack: set[str] = set()
        #: threads fully explored from here (every choice value)
        self.done: set[str] = set()
        self.tid = ""


def explore_dpor(program: Program, bounds: Bounds) -> Outcome:
    """Source-DPOR with sleep sets; see the module docstring."""
    budget = Budget(bounds)
    stack: list[_Node] = []
    while True:
        ex = new_execution(program, bounds)
        # Replay the branch; the last node's decision is new, so its child is rebuilt.
        for node in stack[:-1]:
            node.take(ex, node.tid)
        child_sleep: set[str] = set()
        if stack:
            child_sleep = _take_with_sleep(ex, stack[-1])
        blocked = False
        while not ex.over:
            enabled = ex.enabled()
            node = _Node(list(enabled), child_sleep)
            if not _first_branch(ex, node):
                blocked = True
                break
            stack.append(node)
            child_sleep = _take_with_sleep(ex, node)
        _analyse(ex, stack)
        if budget.record(ex, counted=not blocked):
            return budget.outcome
        if not _backtrack(stack):
            budget.outcome.complete = True
            return budget.outcome


def _first_branch(ex: Execution, node: _Node) -> bool:
    """Pick the node's first branch: the thread that ran last if it may run here (no
    preemption where none is needed), else the first thread not asleep. False if every
    enabled thread is asleep: the run is redundant and ends."""
    candidates = [t for t in node.enabled if t not in node.sleep]
    if not candidates:
        return False
    last = ex.last_tid
    node.tid = last if last in candidates else candidates[0]
    node.backtrack.add(node.tid)
    return True


def _take_with_sleep(ex: Execution, node: _Node) -> set[str]:
    """Run the node's decision; return the sleep set of the child: the threads asleep
    here (or done) whose next step is independent of the step just taken."""
    asleep = node.sleep | node.done
    pending = {q: ex.pending_footprint(q) for q in asleep if q != node.tid}
    node.take(ex, node.tid)
    fp = ex.steps[-1].footprint
    return {q for q, qfp in pending.items() if not dependent(fp, qfp)}


def _advance(node: _Node) -> bool:
    """Move ``node`` to its next branch: the next choice value, else the next backtrack
    thread not yet done nor asleep. False when the node is exhausted."""
    if node.next_choice():
        return True
    node.done.add(node.tid)
    for t in node.enabled:
        if t in node.backtrack and t not in node.done and t not in node.sleep:
            node.tid = t
            node.reset_choice()
            return True
    return False


def _backtrack(stack: list[_Node]) -> bool:
    """Move to the next branch of the deepest node that has one. False when the tree is
    exhausted."""
    while stack:
        if _advance(stack[-1]):
            return True
        stack.pop()
    return False


def _analyse(ex: Execution, stack: list[_Node]) -> None:
    """Find the races of the execution and extend the backtrack sets (Algorithm 1's
    race loop, run once per execution over all its steps)."""
    threads = ex.threads
    nthreads = len(threads)
    tindex = {tid: th.index for tid, th in threads.items()}
    tids = list(threads)
    steps = ex.steps
    n = len(steps)
    vcs: list[list[int]] = []
    thread_of: list[int] = []
    seq_of: list[int] = []
    clocks: list[list[int] | None] = [None] * nthreads
    for tid, th in threads.items():
        if th.creator_step is None:
            clocks[tindex[tid]] = [0] * nthreads
    keys: dict[Key, _KeyState] = {}
    races: list[tuple[int, int]] = []  # (e, e') by step index

    def candidates(t: int, pre: list[int], fp: Footprint, vc: list[int] | None) -> list[int]:
        """The earlier steps that race with a step of thread ``t`` with footprint
        ``fp``; joins their clocks into ``vc`` (the step's own) if given."""
        # Sections that kept this step disabled until they ended (a release of the lock it
        # acquires, of its CPU's token, the end of the work it flushes): the steps inside
        # one ran while this step could not, so they are not its races and the race with
        # the section's acquisition stands for them.
        windows: list[tuple[int, int]] = []
        for key, kind in fp:
            ks = keys.get(key)
            if ks is None:
                continue
            if vc is not None:
                if ks.last_w >= 0:
                    _join(vc, vcs[ks.last_w])
                if kind in WRITE_KINDS:
                    for r in ks.reads.values():
                        _join(vc, vcs[r])
            last = ks.last_w
            if last >= 0 and thread_of[last] != t and (
                    (ks.last_w_kind == RELEASE and kind in (ACQUIRE, USE)
                     and ks.last_acq >= 0)
                    or (ks.last_w_kind == DONE and kind == FLUSH)):
                opener = ks.last_acq if ks.last_w_kind == RELEASE else first_step[
                    thread_of[last]]
                windows.append((opener, last))
        cands: dict[int, int] = {}
        for key, kind in fp:
            ks = keys.get(key)
            if ks is None:
                continue
            for earlier_kind in RACE[_key_class(key)].get(kind, ()):
                if earlier_kind == ACQUIRE:
                    found = [ks.last_acq] if ks.last_acq >= 0 else []
                elif earlier_kind in WRITE_KINDS:
                    found = [ks.last_w] if ks.last_w_kind == earlier_kind else []
                else:  # the read kind of this class of key
                    found = list(ks.reads.values())
                for e in found:
                    te = thread_of[e]
                    if te == t or e <= cands.get(te, -1):
                        continue
                    if any(e != a and vcs[e][thread_of[a]] >= seq_of[a]
                           and vcs[r][te] >= seq_of[e] for a, r in windows):
                        continue
                    cands[te] = e
        out = []
        for te, e in cands.items():
            s = seq_of[e]
            if pre[te] >= s:
                continue  # already ordered before t's previous steps
            if any(d != e and vcs[d][te] >= s for d in cands.values()):
                continue  # not immediate: ordered through another race
            out.append(e)
        return out

    first_step = [-1] * nthreads
    for i, st in enumerate(steps):
        t = tindex[st.tid]
        pre = clocks[t]
        assert pre is not None
        vc = pre.copy()
        vc[t] += 1
        thread_of.append(t)
        seq_of.append(vc[t])
        if first_step[t] < 0:
            first_step[t] = i
        for e in candidates(t, pre, st.footprint, vc):
            races.append((e, i))
        for key, kind in st.footprint:
            ks = keys.get(key)
            if ks is None:
                ks = keys[key] = _KeyState()
            if kind in WRITE_KINDS:
                ks.last_w = i
                ks.last_w_kind = kind
                ks.reads = {}
                if kind in (ACQUIRE, TRY_ACQUIRE):
                    ks.last_acq = i
            else:
                ks.reads[t] = i
        vcs.append(vc)
        clocks[t] = vc
        if st.created is not None:
            clocks[tindex[st.created]] = vc.copy()
    # The next steps of the threads that did not get to run them, as if they came next
    # (Flanagan-Godefroid): the blocked ones, and after a violation cut the execution
    # short, every unfinished one.
    pending: list[tuple[int, int, list[int]]] = []
    cut = ex.halted
    enabled = set(ex.enabled())
    for tid, th in threads.items():
        if th.finished or (tid in enabled and not cut):
            continue
        t = tindex[tid]
        pre = clocks[t]
        assert pre is not None
        vc = pre.copy()
        vc[t] += 1
        for e in candidates(t, pre, ex.pending_footprint(tid), vc):
            pending.append((e, t, vc))
    for e, i in races:
        _reverse(stack, tids, vcs, thread_of, seq_of, e, thread_of[i], vcs[i], i)
    for e, t, vc in pending:
        _reverse(stack, tids, vcs, thread_of, seq_of, e, t, vc, n)


def _join(into: list[int], other: list[int]) -> None:
    for i, v in enumerate(other):
        if v > into[i]:
            into[i] = v


def _reverse(stack: list[_Node], tids: list[str], vcs: list[list[int]],
             thread_of: list[int], seq_of: list[int], e: int, t2: int, vc2: list[int],
             end: int) -> None:
    """Make sure the node before step ``e`` will try something that can run the racing
    step (of thread ``t2``, clock ``vc2``, at ``end``) before ``e``."""
    if e >= len(stack):
        return
    node = stack[e]
    te = thread_of[e]
    se = seq_of[e]
    first: dict[int, int] = {}
    initials: list[int] = []
    for j in range(e + 1, end):
        vj = vcs[j]
        if vj[te] >= se:
            continue  # happens after e: not in notdep(e)
        tj = thread_of[j]
        if tj in first:
            continue
        if all(vj[u] < s for u, s in first.items()):
            initials.append(tj)
        first[tj] = seq_of[j]
    if t2 not in first and all(vc2[u] < s for u, s in first.items()):
        initials.append(t2)
    names = [tids[u] for u in initials]
    if any(q in node.backtrack or q in node.sleep for q in names):
        return
    for q in names:
        if q in node.enabled:
            node.backtrack.add(q)
            return
    # No initial can run there (it would need a disabled thread): fall back on trying
    # everything, as Flanagan and Godefroid do.
    node.backtrack.update(q for q in node.enabled if q not in node.sleep)


# =======================================================================================
# Plain DFS


def explore_dfs(program: Program, bounds: Bounds) -> Outcome:
    """Every interleaving and every choice, without reduction."""
    budget = Budget(bounds)
    stack: list[OptionNode] = []
    while True:
        ex = new_execution(program, bounds)
        for node in stack:
            node.take(ex, node.tid)
        while not ex.over:
            node = OptionNode(list(ex.enabled()))
            last = ex.last_tid
            if last in node.options:  # the non-preemptive order first
                node.options.remove(last)
                node.options.insert(0, last)
            stack.append(node)
            node.take(ex, node.tid)
        if budget.record(ex):
            return budget.outcome
        if not backtrack_options(stack):
            budget.outcome.complete = True
            return budget.outcome
