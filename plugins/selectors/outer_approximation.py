"""Cardinality-constrained hinge-loss SVM solved to provable optimality by outer approximation.

Problem (Bertsimas, Pauphilet & Van Parys 2021, "Sparse classification: a scalable discrete optimization
perspective", Machine Learning 110)::

    min_{s in {0,1}^p, sum s = k}  c(s),   c(s) = min_{w, b} sum_i c_i max(0, 1 - y_i (x_i^T (s * w) + b))
                                                           + ||w||^2 / (2 gamma)

``c`` is convex in ``s``: for any dual-feasible ``beta`` of the inner SVM (see ``hinge_svm``)
``c(s') >= sum(beta) - gamma/2 sum_j s'_j (X_j^T (y beta))^2`` for every ``s'``, with equality at the support where
``beta`` is optimal. These linear cuts, collected in a pool, define a master MILP (``min t`` over binary ``s`` with
``sum s = k`` and ``t >= cut(s)``) whose optimum is a lower bound; every evaluated support is an upper bound.

HiGHS (through Pyomo's persistent ``appsi_highs`` interface) has no lazy-constraint callback, so this is the
multi-tree variant: the master is re-solved after each batch of cuts, with a tight MIP gap because its bound is
the certificate. What makes it fast:

- many cheap first cuts: warm supports (mean difference, the neighbouring k's optimum), then a swap local search
  whose neighbours are pruned by the cut pool (a neighbour whose pool bound already exceeds the incumbent is
  never solved);
- a swap descent on the cut model itself before each master solve: its local minima under the incumbent are
  supports the master would return, solved without a branch and bound (on real MiniLM activations this halved the
  master solves);
- coefficient strengthening against a valid floor (``master_milp``), so far-away cuts do not wreck the LP bound;
- for hard problems, root bounds: the Boolean relaxation (``boolean_relaxation``) and exclusion cuts (the SVM on all
  candidates but one important neuron bounds every support without it), and an exact enumeration master once
  the neurons those bounds force leave few supports;
- one cut pool for every k: each cut is valid for any support, so later k start with all earlier cuts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probekit_plugins.selectors.boolean_relaxation import boolean_relaxation
from probekit_plugins.selectors.master_milp import MasterMILP
from probekit_plugins.selectors.svm_cuts import Cut, CutPool, Evaluation, SupportEvaluator, k_bound

#: supports solved per descent of the cut model: enough to halve the master solves on real activations, few enough
#: not to crowd out the enumeration where the cut model is weak (weak regularisation)
DESCENT_BUDGET = 20


@dataclass
class Certificate:
    """What a solve proved for one k: ``lower_bound <= optimum <= objective``."""

    status: str  # "optimal", "time_limit" or "numerical_limit" (see _KState.status)
    objective: float
    lower_bound: float
    gap: float
    cuts: int
    pool_cuts: int
    master_solves: int
    supports_evaluated: int
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in the result row's ``selector_details``."""
        return {
            "status": self.status, "objective": self.objective, "lower_bound": self.lower_bound, "gap": self.gap,
            "cuts": self.cuts, "pool_cuts": self.pool_cuts, "master_solves": self.master_solves,
            "supports_evaluated": self.supports_evaluated, "seconds": self.seconds, **self.extras,
        }


class SparseSVM:
    """Outer approximation for every k over one candidate matrix, sharing the cut pool across k."""

    def __init__(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray, gamma: float, threads: int = 1,
                 local_search_budget: int = 400, enumeration_limit: int = 250_000) -> None:
        self.evaluator = SupportEvaluator(X, y, weights, gamma)
        self.n_features = X.shape[1]
        self.pool = CutPool(self.n_features)
        self.threads = threads
        self.local_search_budget = local_search_budget
        self.enumeration_limit = enumeration_limit
        self.best: dict[int, Evaluation] = {}
        self._global_floor: float | None = None
        #: c(all candidates but j): a lower bound on every support without j
        self.exclusion_bounds: dict[int, float] = {}

    def global_floor(self) -> float:
        """c(all candidates): no support does better (a feature can always get weight 0); computed once."""
        if self._global_floor is None:
            solution, _, cut = self.evaluator.fractional(np.ones(self.n_features))
            self.pool.add(cut)
            self._global_floor = max(0.0, solution.dual)
        return self._global_floor

    # -- heuristics ---------------------------------------------------------------------------------------------

    def _evaluate(self, support: Sequence[int], state: _KState) -> Evaluation:
        evaluation, cut = self.evaluator.evaluate(support)
        self._record(evaluation, cut, state)
        return evaluation

    def _record(self, evaluation: Evaluation, cut: Cut | None, state: _KState) -> None:
        """Add a fresh evaluation's cut to the pool (and the floor it proves for size k); take its support if it
        beats the incumbent. ``cut`` is None for a support solved before."""
        if cut is not None:
            self.pool.add(cut)
            state.cuts += 1
            state.floor = max(state.floor, k_bound(cut, state.k))
        if state.incumbent is None or evaluation.objective < state.incumbent.objective:
            state.incumbent = evaluation

    def _local_search(self, start: Evaluation, state: _KState, deadline: float, budget: int) -> None:
        """First-improvement swap search from ``start``; neighbours whose pool bound cannot beat the incumbent
        are skipped (each solved neighbour leaves its cut in the pool, which prunes further neighbours)."""
        current = start
        while budget > 0 and time.perf_counter() < deadline:
            support = np.array(current.support)
            bounds = self.pool.swap_bounds(support)
            order = np.argsort(bounds, axis=None, kind="stable")
            improved = False
            for flat in order:
                threshold = state.threshold
                a, j = divmod(int(flat), self.n_features)
                if bounds[a, j] >= threshold or state.floor >= threshold:
                    break
                if budget <= 0 or time.perf_counter() >= deadline:
                    return
                neighbour = support.copy()
                neighbour[a] = j
                key = tuple(sorted(neighbour.tolist()))
                if key in self.evaluator.cache or self.pool.bound(np.array(key)) >= threshold:
                    continue
                evaluation = self._evaluate(key, state)
                budget -= 1
                if evaluation.objective < current.objective * (1 - 1e-12):
                    current = evaluation
                    improved = True
                    break
            if not improved:
                return

    def _descend_cut_model(self, start: Sequence[int], state: _KState, deadline: float, budget: int) -> int:
        """A cheap stand-in for the master: swap descent on the pool bound (the master's own objective) from
        ``start``. A local minimum under the threshold is a support the master could return: it is solved, its cut
        joins the pool, and the descent goes on from it. Returns the number of supports solved; when it ends with
        none left under the threshold nearby, the exact master has less to refute."""
        support = np.array(sorted(start))
        solved = 0
        while solved < budget and time.perf_counter() < deadline:
            current = self.pool.bound(support)
            while True:
                bounds = self.pool.swap_bounds(support)
                a, j = divmod(int(np.argmin(bounds)), self.n_features)
                if bounds[a, j] >= current - 1e-12 * abs(current):
                    break
                support[a], current = j, float(bounds[a, j])
            key = tuple(sorted(support.tolist()))
            if current >= state.threshold or key in self.evaluator.cache:
                break
            self._evaluate(key, state)
            solved += 1
        return solved

    # -- stronger bounds for hard problems ----------------------------------------------------------------------

    def _strengthen(self, k: int, state: _KState, deadline: float) -> bool:
        """Root bounds: the Boolean relaxation (raises the floor, its cuts make the master's LP as strong) and
        exclusion cuts for the features it relies on. Returns whether the floor rose."""
        incumbent = np.zeros(self.n_features)
        incumbent[list(state.incumbent.support)] = 1.0
        middle = time.perf_counter() + 0.5 * (deadline - time.perf_counter())
        bound, cuts = boolean_relaxation(self.evaluator, k, middle,
                                         start=0.5 * incumbent + 0.5 * k / self.n_features, max_iter=20)
        for cut in cuts:
            self.pool.add(cut)
        state.cuts += len(cuts)
        if cuts:
            ranking = [int(j) for j in np.argsort(-cuts[-1].coefficients, kind="stable")]
            ranking = list(state.incumbent.support) + [j for j in ranking if j not in state.incumbent.support]
            for j in ranking[: k + 6]:
                if time.perf_counter() >= deadline:
                    break
                if j in self.exclusion_bounds:
                    continue
                s = np.ones(self.n_features)
                s[j] = 0.0
                solution, _, cut = self.evaluator.fractional(s)
                self.exclusion_bounds[j] = solution.dual
                self.pool.add(cut)
                state.cuts += 1
        if bound > state.floor:
            state.floor = bound
            return True
        return False

    def _enumerate(self, k: int, state: _KState, deadline: float) -> bool:
        """The master solved exactly by enumeration, when few supports remain: every support must contain the
        features whose exclusion bound exceeds the incumbent; the other supports are bounded by the pool
        (vectorised), the most promising are solved (their cuts prune the rest) until none can beat the
        incumbent. Returns False, doing nothing, when there are too many supports."""
        threshold = state.threshold
        forced = sorted(j for j, value in self.exclusion_bounds.items() if value >= threshold)
        free = [j for j in range(self.n_features) if j not in forced]
        outside = min([self.exclusion_bounds[j] for j in forced], default=np.inf)
        m = k - len(forced)
        if m < 0:  # every size-k support misses a forced feature
            state.floor = max(state.floor, min(outside, state.incumbent.objective))
            return True
        if math.comb(len(free), m) > self.enumeration_limit:
            return False
        combos = np.asarray(free, dtype=np.int32)[combinations(len(free), m)]
        supports = np.hstack([np.tile(np.array(forced, dtype=np.int32), (len(combos), 1)), combos])
        bounds = np.full(len(supports), -np.inf)
        alive = np.arange(len(supports))
        for r in np.argsort(-self.pool.constants, kind="stable"):  # strong cuts first: the alive set shrinks fast
            if len(alive) == 0 or time.perf_counter() >= deadline:
                break  # bounds from the cuts applied so far are valid, only weaker
            values = self.pool.constants[r] - self.pool.coefficients[r][supports[alive]].sum(axis=1)
            bounds[alive] = np.maximum(bounds[alive], values)
            alive = alive[bounds[alive] < threshold]
        while len(alive) and time.perf_counter() < deadline:
            alive = alive[bounds[alive] < state.threshold]
            if len(alive) == 0:
                break
            position = int(np.argmin(bounds[alive]))
            pick = alive[position]
            alive = np.delete(alive, position)  # solved: settled up to the inner solver's precision
            evaluation, cut = self.evaluator.evaluate(tuple(sorted(supports[pick].tolist())))
            bounds[pick] = max(bounds[pick], evaluation.solution.dual)  # its objective is an upper bound only
            self._record(evaluation, cut, state)
            if cut is not None:  # a fresh cut: it bounds the other supports too
                values = cut.constant - cut.coefficients[supports[alive]].sum(axis=1)
                bounds[alive] = np.maximum(bounds[alive], values)
        lowest = float(bounds.min()) if len(bounds) else np.inf
        state.floor = max(state.floor, min(lowest, outside, state.incumbent.objective))
        state.enumerated += len(supports)
        return True

    # -- the solve ----------------------------------------------------------------------------------------------

    def solve(self, k: int, warm_supports: Sequence[Sequence[int]], time_limit: float,
              relative_gap: float) -> tuple[Evaluation, Certificate]:
        """Best support of size ``k`` with its certificate; stops at ``relative_gap`` or ``time_limit`` seconds."""
        started = time.perf_counter()
        deadline = started + time_limit
        solves_before = self.evaluator.solves
        state = _KState(k=k, relative_gap=relative_gap, floor=max([self.global_floor()] + [
            k_bound(Cut(float(a), d), k) for a, d in zip(self.pool.constants, self.pool.coefficients)]))
        for support in warm_supports:
            if len(set(support)) == k:
                self._evaluate(list(support), state)
        if k - 1 in self.best:  # the neighbouring k's optimum, plus the feature the pool likes best
            base = list(self.best[k - 1].support)
            rest = [j for j in range(self.n_features) if j not in base]
            bounds = [self.pool.bound(np.array(base + [j])) for j in rest]
            self._evaluate(base + [rest[int(np.argmin(bounds))]], state)
        if k + 1 in self.best:
            base = list(self.best[k + 1].support)
            bounds = [self.pool.bound(np.array(base[:a] + base[a + 1:])) for a in range(len(base))]
            drop = int(np.argmin(bounds))
            self._evaluate(base[:drop] + base[drop + 1:], state)
        if state.incumbent is None:
            raise ValueError(f"solve() needs a warm support of size {k}")
        self._local_search(state.incumbent, state, started + 0.5 * time_limit, self.local_search_budget)
        master: MasterMILP | None = None
        handed = 0
        hard = False
        while not state.closed and time.perf_counter() < deadline:
            if master is None:
                master = MasterMILP(self.n_features, k, state.floor, self.threads, unit=state.incumbent.objective)
                handed = 0
            self._descend_cut_model(state.incumbent.support, state, deadline, DESCENT_BUDGET)
            if state.closed:
                break
            while handed < len(self.pool):
                master.add_cut(float(self.pool.constants[handed]), self.pool.coefficients[handed])
                handed += 1
            remaining = deadline - time.perf_counter()
            # easy problems close within a short first master solve; hard ones first get stronger bounds
            budget = remaining if hard else min(remaining, max(1.0, 0.05 * time_limit))
            result = master.solve(budget, min(relative_gap / 4, 1e-6), state.incumbent.support)
            state.master_solves += 1
            state.floor = max(state.floor, result.bound)
            if state.closed:
                break
            if not hard and (not result.finished or state.master_solves >= 4):
                hard = True
                if self._strengthen(k, state, min(deadline, time.perf_counter() + 0.2 * time_limit)):
                    master = None  # rebuilt with the higher floor: stronger coefficient strengthening
                if not state.closed and self._enumerate(k, state, deadline):
                    break
                continue
            if result.support is None:
                break
            key = tuple(sorted(result.support.tolist()))
            if key in self.evaluator.cache:
                if result.finished:
                    break  # the master returns a support it already has the cut of: no further progress possible
                continue
            evaluation = self._evaluate(key, state)
            self._local_search(evaluation, state, deadline, max(1, self.local_search_budget // 20))
            self._descend_cut_model(key, state, deadline, DESCENT_BUDGET)
        incumbent = state.incumbent
        lower = min(state.floor, incumbent.objective)
        gap = (incumbent.objective - lower) / max(abs(incumbent.objective), 1e-12)
        if k not in self.best or incumbent.objective < self.best[k].objective:
            self.best[k] = incumbent
        certificate = Certificate(
            status=state.status(deadline), objective=incumbent.objective,
            lower_bound=float(lower), gap=float(max(gap, 0.0)), cuts=state.cuts, pool_cuts=len(self.pool),
            master_solves=state.master_solves, supports_evaluated=self.evaluator.solves - solves_before,
            seconds=time.perf_counter() - started, extras={"enumerated_supports": state.enumerated},
        )
        return incumbent, certificate


def combinations(n: int, m: int) -> np.ndarray:
    """Every m-subset of range(n) as the rows of an int32 array, in lexicographic order (vectorised: millions of
    rows in a fraction of a second, where itertools would build millions of tuples)."""
    combos = np.zeros((1, 0), dtype=np.int32) if m == 0 else np.arange(n - m + 1, dtype=np.int32)[:, None]
    for position in range(1, m):
        last = combos[:, -1].astype(np.int64)
        counts = n - m + position - last  # the next entry runs from last + 1 to n - m + position
        rows = np.repeat(np.arange(len(combos)), counts)
        step = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        combos = np.hstack([combos[rows], (last[rows] + 1 + step).astype(np.int32)[:, None]])
    return combos


@dataclass
class _KState:
    """Book-keeping of one k's solve: incumbent (upper bound) and ``floor``, the best proven lower bound."""

    k: int
    relative_gap: float
    floor: float = -np.inf
    incumbent: Evaluation | None = None
    cuts: int = 0
    master_solves: int = 0
    enumerated: int = 0

    @property
    def threshold(self) -> float:
        """Supports whose bound reaches this cannot improve the incumbent by more than the gap."""
        return self.incumbent.objective * (1 - 1e-12)

    def status(self, deadline: float) -> str:
        """'optimal' (gap <= relative_gap), 'time_limit', or 'numerical_limit': the master can only return supports
        already solved, so the remaining gap is the solvers' precision (a relative_gap below about 1e-9)."""
        if self.closed:
            return "optimal"
        return "time_limit" if time.perf_counter() >= deadline else "numerical_limit"

    @property
    def closed(self) -> bool:
        upper = self.incumbent.objective
        return upper - self.floor <= self.relative_gap * max(abs(upper), 1e-12)
