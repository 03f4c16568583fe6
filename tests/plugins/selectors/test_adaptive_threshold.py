"""adaptive_threshold: one telescoping sweep for every k, the reference schedule, real warm starts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import probekit_plugins.selectors.adaptive_threshold as adaptive
from probekit_plugins.selectors.adaptive_threshold import (
    AdaptiveThreshold,
    reference_C,
    reference_l1_ratio,
    reference_schedule,
)


def test_reference_schedule_and_regularisation() -> None:
    assert reference_schedule(1024) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32, 64, 128, 256, 512, 1024]
    assert reference_schedule(100) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32, 64, 100]
    assert reference_schedule(6) == [1, 2, 3, 4, 5, 6]
    assert reference_C(40) == pytest.approx(2.0)
    assert reference_l1_ratio(1) == pytest.approx(0.9) and reference_l1_ratio(100) == pytest.approx(0.1)
    assert reference_l1_ratio(10) == pytest.approx(np.exp(-0.5))


class RecordingFits:
    """Wraps LogisticRegression.fit to record each step's columns and the coefficients it started from."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[dict] = []
        original = LogisticRegression.fit

        def fit(model, X, y, *args, **kwargs):
            start = model.coef_[0].copy() if getattr(model, "coef_", None) is not None else None
            result = original(model, X, y, *args, **kwargs)
            self.steps.append({"width": X.shape[1], "start": start, "coef": model.coef_[0].copy(), "C": model.C,
                               "l1_ratio": model.l1_ratio, "n_iter": int(model.n_iter_[0])})
            return result

        monkeypatch.setattr(LogisticRegression, "fit", fit)


def test_one_sweep_yields_every_k_nested_and_finds_the_planted_neurons(planted, monkeypatch) -> None:
    X, y = planted(1500, 120, [5, 40, 77, 101], 1.6, seed=11)
    fits = RecordingFits(monkeypatch)
    ks = [1, 2, 3, 4, 6, 8]
    selections = AdaptiveThreshold(AdaptiveThreshold.Params(start=64)).select(X, y, ks)
    steps = [64, 32, 16, 12, 10, 8, 7, 6, 5, 4, 3, 2, 1]
    assert [s["width"] for s in fits.steps] == steps  # one fit per step, not per k
    assert [s["C"] for s in fits.steps] == [k / 20 for k in steps]
    assert [s["l1_ratio"] for s in fits.steps] == pytest.approx([reference_l1_ratio(k) for k in steps])
    for small, large in zip(ks, ks[1:]):
        assert set(selections[small].neurons.tolist()) <= set(selections[large].neurons.tolist())  # telescoping
    for k in ks:
        assert len(set(selections[k].neurons.tolist())) == k
    assert set(selections[4].neurons.tolist()) == {5, 40, 77, 101}
    assert selections[1].neurons.tolist() == [5]


def test_each_step_starts_from_the_previous_coefficients(planted, monkeypatch) -> None:
    X, y = planted(1500, 120, [5, 40, 77], 1.6, seed=12)
    fits = RecordingFits(monkeypatch)
    AdaptiveThreshold(AdaptiveThreshold.Params(start=32, tol=1e-4)).select(X, y, [1, 2, 4])
    assert fits.steps[0]["start"] is None
    for previous, step in zip(fits.steps, fits.steps[1:]):
        kept = np.sort(np.abs(previous["coef"]))[::-1][: step["width"]]
        # the start is the previous probe's coefficients on the neurons it kept: its largest ones
        np.testing.assert_allclose(np.sort(np.abs(step["start"]))[::-1], kept)
    warm = list(fits.steps)
    fits.steps.clear()
    AdaptiveThreshold(AdaptiveThreshold.Params(start=32, tol=1e-4, warm_start=False)).select(X, y, [1, 2, 4])
    assert all(s["start"] is None for s in fits.steps)
    # at a tight tolerance, where iteration counts mean something, warm steps need fewer saga epochs
    assert sum(s["n_iter"] for s in warm[1:]) < sum(s["n_iter"] for s in fits.steps[1:])


def test_start_is_capped_at_the_candidates_and_raised_to_the_largest_k(planted) -> None:
    X, y = planted(400, 20, [3, 9], 2.0, seed=13)
    selections = AdaptiveThreshold().select(X, y, [1, 2])
    assert selections[2].details["steps"][0] == 20
    selections = AdaptiveThreshold(AdaptiveThreshold.Params(start=4)).select(X, y, [1, 6])
    assert selections[6].details["steps"][0] == 6 and len(selections[6].neurons) == 6
    assert adaptive.AdaptiveThreshold.Params(schedule=[50, 20]).schedule == [50, 20]
