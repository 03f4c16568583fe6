"""Mutual information between each continuous neuron and a discrete label, k-nearest-neighbour estimator.

Ross 2014 ("Mutual information between discrete and continuous data sets", PLoS ONE 9(2)), exactly as
scikit-learn's ``mutual_info_classif`` computes it for continuous features (same scaling, same tie-breaking noise
drawn from ``RandomState(seed)``, same neighbour counts), but vectorised over neurons: in one dimension the k
nearest neighbours of a point lie in a window of the sorted values and the neighbour count is a binary search, so
no tree per neuron is needed. Results equal scikit-learn's up to floating-point summation order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.special import digamma
from sklearn.preprocessing import scale

#: neurons processed together: a block holds a few arrays of [block, n_samples]; small blocks stay in cache
BLOCK = 8


def kth_neighbour_distance(sorted_values: np.ndarray, k: int) -> np.ndarray:
    """Distance from every entry of each sorted row to its k-th nearest other entry of the same row."""
    rows, m = sorted_values.shape
    best = np.full((rows, m), np.inf)
    for left in range(k + 1):  # the k neighbours are the window [i - left, i + k - left]
        right = k - left
        lo, hi = left, m - right
        if hi <= lo:
            continue
        width = np.maximum(sorted_values[:, lo:hi] - sorted_values[:, : hi - left],
                           sorted_values[:, lo + right:] - sorted_values[:, lo:hi])
        np.minimum(best[:, lo:hi], width, out=best[:, lo:hi])
    return best


def count_within(sorted_all: np.ndarray, points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """For each row r and entry i: #{j : (sorted_all[r, j] - points[r, i])^2 <= radius[r, i]^2}.

    The comparison is the one scikit-learn's KDTree makes (squared distances), so the counts agree exactly; a
    binary search finds the block and one pass of exact checks fixes rounding at its two ends.
    """
    rows, n = sorted_all.shape
    hi = np.empty(points.shape, dtype=np.int64)
    lo = np.empty(points.shape, dtype=np.int64)
    for r in range(rows):
        hi[r] = np.searchsorted(sorted_all[r], points[r] + radius[r], side="right")
        lo[r] = np.searchsorted(sorted_all[r], points[r] - radius[r], side="left")
    flat = sorted_all.ravel()
    row = np.repeat(np.arange(rows) * n, points.shape[1])
    point, limit = points.ravel(), (radius * radius).ravel()
    hi, lo = hi.ravel(), lo.ravel()
    todo = np.arange(len(point))  # entries whose block ends may still be off by rounding

    def inside(position: np.ndarray, at: np.ndarray) -> np.ndarray:
        return (flat[row[at] + np.clip(position, 0, n - 1)] - point[at]) ** 2 <= limit[at]

    while len(todo):
        h, l_ = hi[todo], lo[todo]
        grow_hi = (h < n) & inside(h, todo)
        shrink_hi = (h > l_) & ~inside(h - 1, todo)
        grow_lo = (l_ > 0) & inside(l_ - 1, todo)
        shrink_lo = (l_ < h) & ~inside(l_, todo)
        hi[todo] += grow_hi.astype(np.int64) - shrink_hi
        lo[todo] += shrink_lo.astype(np.int64) - grow_lo
        todo = todo[grow_hi | shrink_hi | grow_lo | shrink_lo]
    hi, lo = hi.reshape(points.shape), lo.reshape(points.shape)
    return hi - lo


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def mutual_info_knn(X: np.ndarray, y: np.ndarray, n_neighbors: int = 3, seed: int = 0) -> np.ndarray:
    """MI (nats) between each column of ``X`` and the discrete labels ``y``; negative estimates become 0.

    Same estimator and numbers as ``sklearn.feature_selection.mutual_info_classif(X, y,
    n_neighbors=n_neighbors, random_state=seed)`` with every feature continuous.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n, d = X.shape
    noise = np.random.RandomState(seed).standard_normal(size=(n, d))  # drawn exactly as scikit-learn draws it
    labels, counts = np.unique(y, return_counts=True)
    kept_labels = labels[counts > 1]  # a class with a single sample has no neighbour: dropped, as scikit-learn does
    keep = np.isin(y, kept_labels)
    y, n_kept = y[keep], int(keep.sum())
    table = digamma(np.arange(1, n_kept + 1, dtype=np.float64))  # digamma(m) at table[m - 1]
    constant = float(digamma(n_kept))
    per_class = []
    for label in kept_labels:
        size = int(np.sum(y == label))
        k = min(n_neighbors, size - 1)
        constant += size * (float(digamma(k)) - float(digamma(size))) / n_kept
        per_class.append((y == label, k))

    def block_sums(start: int) -> np.ndarray:
        """Sum over samples of digamma(neighbour count) for columns start..start + BLOCK."""
        columns = slice(start, start + BLOCK)
        block = scale(np.asarray(X[:, columns], dtype=np.float64), with_mean=False)  # per column, like sklearn
        block += 1e-10 * np.maximum(1.0, np.mean(np.abs(block), axis=0)) * noise[:, columns]
        block = np.ascontiguousarray(block[keep].T)
        everything = np.sort(block, axis=1)
        total = np.zeros(len(block))
        for mask, k in per_class:
            values = np.sort(block[:, mask], axis=1)
            radius = np.nextafter(kth_neighbour_distance(values, k), 0)
            total += table[count_within(everything, values, radius) - 1].sum(axis=1)
        return total

    # numpy's sorts, searches and gathers release the GIL: blocks run in parallel threads
    with ThreadPoolExecutor(max_workers=min(available_cores(), 8)) as pool:
        totals = list(pool.map(block_sums, range(0, d, BLOCK)))
    mi = constant - np.concatenate(totals) / n_kept if totals else np.empty(0)
    return np.maximum(0.0, mi)
