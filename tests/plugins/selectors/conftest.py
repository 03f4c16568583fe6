"""Independent references for the selector tests: the SVM objective from HiGHS's QP solver on the primal, and
small activation-shaped data with a planted signal."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def exact_svm_objective(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float) -> float:
    """min_{w,b,xi} ||w||^2 / (2 gamma) + c . xi  s.t.  xi_i >= 1 - y_i (z_i . w + b), xi >= 0 (HiGHS QP).

    HiGHS's active-set QP solver can cycle on a rare instance; the same problem with its samples in another
    order and the objective multiplied by a constant (c -> a c, gamma -> gamma / a) is then solved instead."""
    rng = np.random.default_rng(0)
    order = np.arange(len(y))
    for attempt, factor in enumerate((1.0, 10.0, 0.1, 100.0, 1.0, 10.0, 1.0, 0.1)):
        if attempt >= 4:
            order = rng.permutation(len(y))
        value = _highs_qp(Z[order], y[order], c[order] * factor, gamma / factor)
        if value is not None:
            return value / factor
    raise AssertionError("HiGHS's QP solver did not solve the reference SVM")


def _highs_qp(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float) -> float | None:
    import highspy

    n, q = Z.shape
    n_vars = q + 1 + n
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("primal_feasibility_tolerance", 1e-10)
    highs.setOptionValue("dual_feasibility_tolerance", 1e-10)
    highs.setOptionValue("qp_iteration_limit", 20_000)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_vars, n
    lp.col_cost_ = np.r_[np.zeros(q + 1), c]
    lp.col_lower_ = np.r_[np.full(q + 1, -highspy.kHighsInf), np.zeros(n)]
    lp.col_upper_ = np.full(n_vars, highspy.kHighsInf)
    lp.row_lower_, lp.row_upper_ = np.ones(n), np.full(n, highspy.kHighsInf)
    A = np.zeros((n, n_vars))
    A[:, :q] = y[:, None] * Z
    A[:, q] = y
    A[np.arange(n), q + 1 + np.arange(n)] = 1.0
    starts, rows, values = [0], [], []
    for j in range(n_vars):
        nonzero = np.flatnonzero(A[:, j])
        rows += nonzero.tolist()
        values += A[nonzero, j].tolist()
        starts.append(len(rows))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = starts, rows, values
    highs.passModel(lp)
    hessian = highspy.HighsHessian()
    hessian.dim_ = n_vars
    hessian.format_ = highspy.HessianFormat.kTriangular
    hessian.start_ = list(range(q)) + [q] * (n_vars - q + 1)
    hessian.index_ = list(range(q))
    hessian.value_ = [1.0 / gamma] * q
    highs.passHessian(hessian)
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return float(highs.getInfo().objective_function_value)


@pytest.fixture(scope="session")
def exact_svm() -> Callable[[np.ndarray, np.ndarray, np.ndarray, float], float]:
    """The weighted hinge-loss SVM objective, solved exactly by an algorithm independent of probekit's."""
    return exact_svm_objective


def planted_activations(n: int, d: int, signal: list[int], strength: float, seed: int,
                        positive_rate: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """GELU-like non-negative activations; ``signal`` neurons shift with the label, with strength decreasing
    in list order; one decoy per signal neuron is a noisy copy of it (correlated with the label, but redundant)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < positive_rate
    pre = rng.standard_normal((n, d)) - 1.0
    for rank, j in enumerate(signal):
        pre[:, j] += strength * (1.0 - 0.15 * rank) * y
    others = [j for j in range(d) if j not in signal]
    for j, distractor in zip(signal, others[: len(signal)]):
        pre[:, distractor] = 0.8 * pre[:, j] + 0.6 * rng.standard_normal(n)
    X = 0.5 * pre * (1.0 + np.tanh(0.7978845608 * (pre + 0.044715 * pre**3)))
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def planted() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Factory for activation-shaped data with a planted sparse signal."""
    return planted_activations
