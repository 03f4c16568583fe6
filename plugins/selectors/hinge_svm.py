"""The inner problem of optimal sparse probing: a ridge-regularised, class-weighted hinge-loss SVM on a few features,
solved to (near) machine precision with a dual certificate.

Primal, for features ``Z`` ([n, q]), labels ``y`` in {-1, +1}, sample weights ``c`` > 0 and ridge ``gamma``::

    P(w, b) = sum_i c_i max(0, 1 - y_i (z_i . w + b)) + ||w||^2 / (2 gamma)

Dual (Bertsimas, Pauphilet & Van Parys 2021, "Sparse classification", eq. for the hinge loss)::

    D(beta) = sum_i beta_i - (gamma / 2) || Z^T (y * beta) ||^2,   0 <= beta_i <= c_i,   sum_i y_i beta_i = 0

with ``w = gamma Z^T (y * beta)``. Every dual-feasible ``beta`` satisfies ``D(beta) <= P(w, b)`` for every ``(w, b)``,
so ``beta`` certifies how close a primal point is to optimal. Method: Newton's method on a Huber-smoothed hinge loss
with the smoothing width driven to zero (the problem has only q + 1 <= ~50 unknowns, so a Newton step costs one
small linear solve), then an exact active-set polish that recovers the dual of the non-smooth problem; if the duality
gap still exceeds ``tolerance`` the problem goes to scikit-learn's libsvm ``SVC(kernel="linear")``, which solves
exactly this problem (unregularised intercept, per-sample weights).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: relative duality gap the solver aims for
DEFAULT_TOLERANCE = 1e-9
#: relative duality gap above which the problem goes to libsvm
FALLBACK_GAP = 1e-7
#: Huber widths of the continuation; the first exceeds every initial residual 1 - y_i b of the zero start
SMOOTHING_SCHEDULE = (2.0, 0.3, 0.05, 1e-2)
#: continuation for degenerate problems where the active-set method cycles
FINE_SMOOTHING = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)


@dataclass(frozen=True)
class HingeSolution:
    """A primal point, a feasible dual point and their objective values (``dual <= optimum <= primal``)."""

    w: np.ndarray
    b: float
    beta: np.ndarray
    primal: float
    dual: float
    method: str

    @property
    def relative_gap(self) -> float:
        """(primal - dual) / |primal|: 0 means both are optimal. Relative even for tiny objectives (strong margins,
        large gamma), since the outer problem's gap is relative too."""
        return max(0.0, self.primal - self.dual) / max(abs(self.primal), 1e-300)


def primal_objective(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float, w: np.ndarray, b: float) -> float:
    """P(w, b): weighted hinge loss plus ||w||^2 / (2 gamma)."""
    margins = y * (Z @ w + b)
    return float(c @ np.maximum(0.0, 1.0 - margins) + w @ w / (2.0 * gamma))


def dual_objective(Z: np.ndarray, y: np.ndarray, gamma: float, beta: np.ndarray) -> float:
    """D(beta) = sum(beta) - gamma/2 ||Z^T (y beta)||^2 (meaningful for feasible beta)."""
    v = Z.T @ (y * beta)
    return float(beta.sum() - 0.5 * gamma * (v @ v))


def make_dual_feasible(beta: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Clip ``beta`` into the box [0, c] and restore sum(y * beta) = 0 by shrinking the heavier class uniformly."""
    beta = np.clip(beta, 0.0, c)
    positive = y > 0
    mass_pos, mass_neg = beta[positive].sum(), beta[~positive].sum()
    if mass_pos > mass_neg and mass_pos > 0:
        beta[positive] *= mass_neg / mass_pos
    elif mass_neg > mass_pos and mass_neg > 0:
        beta[~positive] *= mass_pos / mass_neg
    return beta


def _smoothed_newton(
    A: np.ndarray, c: np.ndarray, gamma: float, theta: np.ndarray, mu: float, max_iter: int = 60
) -> np.ndarray:
    """Minimise sum c_i h_mu(1 - A_i theta) + ||theta[:-1]||^2 / (2 gamma) by damped Newton (h_mu: Huber hinge)."""
    q1 = A.shape[1]
    ridge = np.full(q1, 1.0 / gamma)
    ridge[-1] = 0.0

    def value(r: np.ndarray, th: np.ndarray) -> float:
        quad = np.clip(r, 0.0, mu)
        loss = np.where(r > mu, r - 0.5 * mu, quad * quad / (2.0 * mu))
        return float(c @ loss + 0.5 * (ridge * th) @ th)

    r = 1.0 - A @ theta
    current = value(r, theta)
    for _ in range(max_iter):
        slope = np.clip(r / mu, 0.0, 1.0)
        grad = ridge * theta - A.T @ (c * slope)
        zone = (r > 0.0) & (r < mu)
        A_zone = A[zone]
        H = (A_zone.T * (c[zone] / mu)) @ A_zone
        H[np.diag_indices(q1)] += ridge
        if not zone.any():  # the loss is locally linear in b: borrow the curvature of a fully smoothed loss
            H[-1, -1] += float(c.sum()) / mu
        scale_ = max(1.0, float(np.abs(np.diag(H)).max()))
        H[np.diag_indices(q1)] += 1e-13 * scale_
        try:
            step = -np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            step = -grad / scale_
        slope_along = float(grad @ step)
        if slope_along >= 0:  # not a descent direction (numerically singular Hessian): use the gradient
            step = -grad / scale_
            slope_along = float(grad @ step)
        if -slope_along <= 1e-15 * max(abs(current), 1e-300):
            return theta
        Astep = A @ step
        t = 1.0
        while True:
            candidate = theta + t * step
            r_new = r - t * Astep
            new = value(r_new, candidate)
            if new <= current + 1e-4 * t * slope_along or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12:
            return theta
        theta, r, previous, current = candidate, r_new, current, new
        if previous - current <= 1e-15 * max(abs(current), 1e-300) and t == 1.0:
            return theta
    return theta


def _line_minimum(r: np.ndarray, slopes: np.ndarray, c: np.ndarray, d0: float, curvature: float,
                  t_max: float) -> tuple[float, int]:
    """Exact minimiser over [0, t_max] of t -> sum c_i max(0, r_i - t s_i) + d0 t + curvature t^2 / 2.

    Returns (t, j): j is the index whose kink the minimiser sits on, or -1 for a smooth minimiser / t_max.
    """
    moving = slopes != 0.0
    kinks = np.full(len(r), np.inf)
    kinks[moving] = r[moving] / slopes[moving]
    at_kink = np.abs(r) <= 1e-13
    # right derivative at 0: points inside the loss, and points on their kink that the step pushes inside
    inside = (r > 1e-13) | (at_kink & (slopes < 0))
    derivative = d0 - float(c[inside] @ slopes[inside])
    entering = np.flatnonzero(at_kink & (slopes < 0))
    if derivative >= 0 and len(entering):
        before = derivative + float(c[entering] @ slopes[entering])
        if before < 0:  # the step is blocked at t = 0 by a point sitting on its kink: it joins the margin
            return 0.0, int(entering[np.argmax(c[entering] * np.abs(slopes[entering]))])
    kinks[at_kink] = np.inf
    candidates = np.flatnonzero(moving & (kinks > 0) & (kinks < np.inf))
    order = candidates[np.argsort(kinks[candidates], kind="stable")]
    t_prev = 0.0
    for j in order:
        t_j = kinks[j]
        if derivative >= 0:
            return t_prev, -1
        if curvature > 0 and t_prev - derivative / curvature <= min(t_j, t_max):
            return t_prev - derivative / curvature, -1
        if t_j >= t_max:
            return t_max, -1
        derivative += curvature * (t_j - t_prev) + c[j] * abs(slopes[j])
        t_prev = t_j
        if derivative >= 0:
            return t_j, int(j)
    if derivative >= 0:
        return t_prev, -1
    if curvature > 0:
        return min(t_max, t_prev - derivative / curvature), -1
    return t_max, -1


def _active_set(
    Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float, theta: np.ndarray, max_iter: int = 200
) -> np.ndarray | None:
    """Exact minimiser of the non-smooth primal by an active-set method, returned as its dual ``beta``.

    The working set M holds points kept exactly on the margin. Each step minimises the quadratic model of the
    current face (points with r > 0 contribute their linear loss, M is an equality), moves toward it with an exact
    line search over the hinge kinks (a kink that stops the step joins M), and at a face optimum drops from M a
    point whose multiplier leaves [0, c_i]. None if it does not finish in ``max_iter`` steps.
    """
    n, q = Z.shape
    A = np.empty((n, q + 1))
    A[:, :q] = Z * y[:, None]
    A[:, q] = y
    ridge = np.full(q + 1, 1.0 / gamma)
    ridge[-1] = 0.0
    on_margin = np.zeros(n, dtype=bool)
    push_inside = np.zeros(n, dtype=bool)
    theta = theta.copy()
    seen: set[bytes] = set()
    for _ in range(max_iter):
        r = 1.0 - A @ theta
        r[on_margin] = 0.0
        inside = ~on_margin & ((r > 0) | (push_inside & (r == 0)))
        g = A[inside].T @ c[inside]
        M = np.flatnonzero(on_margin)
        if len(M) == 0:
            target = np.append(gamma * g[:q], theta[-1])
            direction = target - theta
            slope_b = -g[q]
            direction[-1] = -slope_b if slope_b != 0 else 0.0
            t_max = np.inf if slope_b != 0 else 1.0
            multipliers = np.empty(0)
        else:
            AM = A[M]
            m = len(M)
            K = np.zeros((q + 1 + m, q + 1 + m))
            K[np.arange(q + 1), np.arange(q + 1)] = ridge
            K[: q + 1, q + 1:] = AM.T
            K[q + 1:, : q + 1] = AM
            rhs = np.concatenate([g, np.ones(m)])
            solution, *_ = np.linalg.lstsq(K, rhs, rcond=None)
            direction = solution[: q + 1] - theta
            multipliers = -solution[q + 1:]
            t_max = 1.0
        if not np.all(np.isfinite(direction)):
            return None
        slopes = A @ direction
        slopes[on_margin] = 0.0
        d0 = float((ridge * theta) @ direction)
        curvature = float((ridge * direction) @ direction)
        t, blocking = _line_minimum(r, slopes, c, d0, curvature, t_max)
        theta = theta + t * direction
        if blocking >= 0:
            on_margin[blocking] = True
            push_inside[blocking] = False
            continue
        if (0 < t < t_max) or len(M) == 0:
            continue
        release, to_inside = -1, False
        if np.any(multipliers < 0) or np.any(multipliers > c[M]):
            # multipliers of a degenerate face are not unique: look for ones inside the box before leaving it
            multipliers, release, to_inside = _box_multipliers(A[M], ridge * theta - g, c[M])
        if release < 0:
            beta = np.where(inside, c, 0.0)
            beta[M] = multipliers
            return beta
        state = np.packbits(on_margin).tobytes()
        if state in seen:  # a face visited before: the active set cycles
            return None
        seen.add(state)
        on_margin[M[release]] = False
        push_inside[M[release]] = to_inside
    return None


def _box_multipliers(AM: np.ndarray, target: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """Multipliers 0 <= lam <= upper with AM^T lam = target, by bounded least squares.

    Returns (lam, -1, False) when they exist; otherwise (lam, i, to_inside) naming the margin point whose bound
    blocks the fit most: it leaves the margin, to the inside of the loss when it wanted lam_i > upper_i.
    """
    from scipy.optimize import lsq_linear

    fit = lsq_linear(AM.T, target, bounds=(np.zeros_like(upper), upper), method="bvls", tol=1e-13)
    lam = np.clip(fit.x, 0.0, upper)
    residual = target - AM.T @ lam
    if np.linalg.norm(residual) <= 1e-10 * max(1.0, float(np.linalg.norm(target))):
        return lam, -1, False
    gradient = -AM @ residual  # of 0.5 ||AM^T lam - target||^2
    wants_below = (lam <= 1e-12 * upper) & (gradient > 0)
    wants_above = (lam >= upper * (1 - 1e-12)) & (gradient < 0)
    score = np.where(wants_below, gradient, 0.0) + np.where(wants_above, -gradient, 0.0)
    if not np.any(score > 0):
        return lam, int(np.argmax(np.abs(gradient))), bool(gradient[int(np.argmax(np.abs(gradient)))] < 0)
    worst = int(np.argmax(score))
    return lam, worst, bool(wants_above[worst])


def solve_hinge_svm(
    Z: np.ndarray,
    y: np.ndarray,
    c: np.ndarray,
    gamma: float,
    start: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> HingeSolution:
    """Solve the weighted hinge-loss SVM with ridge 1/(2 gamma) and a free intercept on features ``Z``.

    ``y`` holds -1/+1, ``c`` the per-sample weights, ``start`` an optional initial ``[w, b]``. The result carries a
    dual-feasible ``beta``. The active-set method usually ends with a gap at machine precision; degenerate problems
    (many points tied on the margin) continue the smoothing, and a gap still above ``FALLBACK_GAP`` goes to libsvm.
    """
    if gamma > 1.0:
        # weak ridge, near hard margin: the same minimiser solves the problem scaled by gamma (weights gamma c,
        # ridge 1/2), whose objective is not tiny; its dual is gamma beta
        scaled = _solve(Z, y, gamma * c, 1.0, start, tolerance)
        beta = make_dual_feasible(scaled.beta / gamma, y, c)
        return _pair(Z, y, c, gamma, beta, scaled.w, scaled.b, scaled.method)
    return _solve(Z, y, c, gamma, start, tolerance)


def _solve(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float, start: np.ndarray | None,
           tolerance: float) -> HingeSolution:
    n, q = Z.shape
    A = np.empty((n, q + 1))
    A[:, :q] = Z * y[:, None]
    A[:, q] = y
    theta = np.zeros(q + 1) if start is None else np.asarray(start, dtype=np.float64).copy()
    for mu in SMOOTHING_SCHEDULE:
        theta = _smoothed_newton(A, c, gamma, theta, mu)
    best = _smoothed_pair(Z, y, c, gamma, theta, SMOOTHING_SCHEDULE[-1])
    if best.relative_gap <= tolerance:
        return best
    exact = _active_set(Z, y, c, gamma, theta)
    if exact is not None:
        exact = make_dual_feasible(exact, y, c)
        w_exact = gamma * (Z.T @ (y * exact))
        candidate = _pair(Z, y, c, gamma, exact, w_exact, _best_intercept(Z @ w_exact, y, c), "active-set")
        if candidate.relative_gap < best.relative_gap:
            best = candidate
        if best.relative_gap <= tolerance:
            return best
    for mu in FINE_SMOOTHING:  # degenerate margins (many tied points): keep smoothing down instead
        theta = _smoothed_newton(A, c, gamma, theta, mu)
        candidate = _smoothed_pair(Z, y, c, gamma, theta, mu)
        if candidate.relative_gap < best.relative_gap:
            best = candidate
        if best.relative_gap <= tolerance:
            return best
    if best.relative_gap <= max(tolerance, FALLBACK_GAP):
        return best
    fallback = _libsvm(Z, y, c, gamma)
    return fallback if fallback.relative_gap < best.relative_gap else best


def _smoothed_pair(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float, theta: np.ndarray,
                   mu: float) -> HingeSolution:
    """The primal point of a smoothed solve and its dual (the Huber slopes, made exactly feasible)."""
    w, b = theta[:-1], float(theta[-1])
    residual = 1.0 - y * (Z @ w + b)
    beta = make_dual_feasible(c * np.clip(residual / mu, 0.0, 1.0), y, c)
    return _pair(Z, y, c, gamma, beta, w, _best_intercept(Z @ w, y, c), "newton")


def _pair(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float, beta: np.ndarray, w: np.ndarray, b: float,
          method: str) -> HingeSolution:
    return HingeSolution(w, b, beta, primal_objective(Z, y, c, gamma, w, b), dual_objective(Z, y, gamma, beta), method)


def _best_intercept(scores: np.ndarray, y: np.ndarray, c: np.ndarray) -> float:
    """The intercept minimising sum c_i max(0, 1 - y_i (scores_i + b)) exactly (a weighted-median breakpoint)."""
    breakpoints = y - scores  # loss term i has its kink at b = y_i - scores_i (y_i = +-1 so 1/y_i = y_i)
    order = np.argsort(breakpoints)
    bp, yo, co = breakpoints[order], y[order], c[order]
    # slope at b just above bp[j]: -sum_{y>0, bp>b} c + sum_{y<0, bp<=b} c
    pos_after = np.cumsum((co * (yo > 0))[::-1])[::-1]  # sum of c over y>0 with index >= j
    neg_upto = np.cumsum(co * (yo < 0))
    slope_after = -np.append(pos_after[1:], 0.0) + neg_upto
    j = int(np.searchsorted(slope_after, 0.0, side="left"))
    return float(bp[min(j, len(bp) - 1)])


def _libsvm(Z: np.ndarray, y: np.ndarray, c: np.ndarray, gamma: float) -> HingeSolution:
    """The same problem through scikit-learn's libsvm: min ||w||^2/2 + C sum c_i xi_i with C = gamma."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import SVC

    model = SVC(kernel="linear", C=gamma, tol=1e-10, max_iter=1_000_000, shrinking=True)
    with warnings.catch_warnings():  # an unfinished SMO still yields a feasible dual: its gap is measured below
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Z, y, sample_weight=c)
    beta = np.zeros(len(y))
    beta[model.support_] = np.abs(model.dual_coef_[0]) / gamma
    beta = make_dual_feasible(beta, y, c)
    w = model.coef_[0].astype(np.float64)
    b = _best_intercept(Z @ w, y, c)
    return _pair(Z, y, c, gamma, beta, w, b, "libsvm")
