"""The master problem of outer approximation: a MILP over the binary support, in Pyomo, solved by HiGHS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probekit.api import RunError


@dataclass(frozen=True)
class MasterResult:
    """One master solve: its best support, the support's master value and the master's proven bound."""

    support: np.ndarray | None
    value: float
    bound: float
    finished: bool


class MasterMILP:
    """``min t  s.t.  sum s = k,  t >= floor,  t >= constant_r - coefficients_r @ s  (every cut r),  s binary`` in
    Pyomo, solved by HiGHS through the persistent ``appsi_highs`` interface (new cuts are added as new rows).

    ``floor`` is a valid lower bound on every size-k support, which allows coefficient strengthening: a
    coefficient above ``constant - floor`` can be lowered to it (on a binary s that uses it the cut falls to the
    floor anyway), which keeps the LP relaxation from exploiting the huge slopes of cuts taken far away.

    ``unit`` is the objective's scale (e.g. the incumbent's value): the MILP works in multiples of it, since HiGHS's
    tolerances are absolute and an objective of 1e-7 (large gamma, separable data) would drown in them.
    """

    def __init__(self, n_features: int, k: int, floor: float, threads: int = 1, unit: float = 1.0) -> None:
        import highspy
        import pyomo.environ as pyo
        from pyomo.contrib.appsi.solvers import Highs

        model = pyo.ConcreteModel()
        model.J = pyo.RangeSet(0, n_features - 1)
        model.s = pyo.Var(model.J, domain=pyo.Binary)
        self.unit = float(unit)
        model.t = pyo.Var(domain=pyo.Reals, bounds=(floor / self.unit, None))
        model.cardinality = pyo.Constraint(expr=pyo.quicksum(model.s[j] for j in model.J) == k)
        model.cuts = pyo.ConstraintList()
        model.objective = pyo.Objective(expr=model.t, sense=pyo.minimize)
        self.model = model
        self.k = k
        self.floor = floor
        self._s = [model.s[j] for j in range(n_features)]
        solver = Highs()
        if not solver.available():
            raise RunError("osp needs the HiGHS solver, which Pyomo's appsi_highs interface cannot find: "
                           "pip install highspy (it is a probekit dependency: reinstall probekit)")
        # HiGHS keeps one thread pool per process, sized by the first solve; a later solve asking for another
        # size fails outright (as if nothing were found) unless the pool is rebuilt
        highspy.Highs.resetGlobalScheduler(True)
        solver.config.load_solution = False
        solver.highs_options = {
            "threads": int(threads),
            "mip_feasibility_tolerance": 1e-9,
            "primal_feasibility_tolerance": 1e-9,
            "dual_feasibility_tolerance": 1e-9,
            "mip_abs_gap": 0.0,
        }
        update = solver.update_config
        update.check_for_new_or_removed_vars = False
        update.update_vars = False
        update.update_named_expressions = False
        update.check_for_new_objective = False
        update.update_objective = False
        update.update_constraints = False
        update.update_params = False
        self.solver = solver
        self.rows = 0

    def add_cut(self, constant: float, coefficients: np.ndarray) -> bool:
        """Add a (strengthened) cut row; cuts that cannot rise above the floor are skipped."""
        from pyomo.core.expr.numeric_expr import LinearExpression

        constant, coefficients = constant / self.unit, np.asarray(coefficients) / self.unit
        room = constant - self.floor / self.unit
        if room <= 0:
            return False
        strengthened = np.minimum(coefficients, room)
        # HiGHS ignores matrix entries below 1e-9; dropping them here and charging them to the constant keeps
        # the row valid (as if every dropped s_j were 1)
        tiny = strengthened <= 1e-8
        constant -= float(strengthened[tiny].sum())
        strengthened = np.where(tiny, 0.0, strengthened)
        used = np.flatnonzero(~tiny)
        expression = LinearExpression(constant=float(constant), linear_coefs=[float(-strengthened[j]) for j in used],
                                      linear_vars=[self._s[j] for j in used])
        self.model.cuts.add(expression <= self.model.t)
        self.rows += 1
        return True

    def solve(self, time_limit: float, mip_gap: float, incumbent: Sequence[int] | None) -> MasterResult:
        """Solve the master; a time-limited solve still returns HiGHS's proven bound."""
        from pyomo.contrib.appsi.base import TerminationCondition

        if incumbent is not None:
            chosen = set(int(j) for j in incumbent)
            for j, var in enumerate(self._s):
                var.set_value(1.0 if j in chosen else 0.0, skip_validation=True)
            self.solver.config.warmstart = True
        self.solver.config.time_limit = max(0.01, float(time_limit))
        self.solver.config.mip_gap = float(mip_gap)
        results = self.solver.solve(self.model)
        if results.termination_condition in (TerminationCondition.error, TerminationCondition.unknown):
            raise RuntimeError(f"HiGHS failed on the master MILP (termination: {results.termination_condition.name})")
        bound = results.best_objective_bound
        bound = -np.inf if bound is None else float(bound) * self.unit
        finished = results.termination_condition == TerminationCondition.optimal
        if results.best_feasible_objective is None:
            return MasterResult(None, np.inf, bound, finished)
        results.solution_loader.load_vars(self._s)
        values = np.array([var.value for var in self._s], dtype=np.float64)
        support = np.sort(np.argsort(-values, kind="stable")[: self.k])
        return MasterResult(support, float(results.best_feasible_objective) * self.unit, bound, finished)
