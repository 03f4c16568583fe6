"""Controls: the shuffled-label control is the same pipeline on permuted training labels, the random-neuron control
probes k random neurons of the whole layer (both checked against scikit-learn by hand); each is a resumable cell of
its own on every executor; selectivity is the probe's F1 minus its control's; a real feature (MiniLM's digits) is
selective, random labels are not."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from probekit.cells import probe_cells
from probekit.contracts import Feature
from probekit.controls import with_selectivity
from probekit.registry import PluginRegistry
from probekit.results import RESULT_SCHEMA, RunDirectory
from probekit.spec import validate_spec_text
from probekit.splits import split_feature
from probekit.sweep import run_sweep

pytestmark = pytest.mark.usefixtures("fake_model_plugin")

SPEC = """
models: [{plugin: fake}]
datasets:
  - plugin: text_features
    params: {max_sequences: 60, sequence_length: 64, max_examples: 300, min_positive_rate: 0.02,
             features: [all_digits, leading_capital]}
layers: [0, 1]
selectors: [{plugin: mean_diff}, {plugin: f_stat}]
ks: [1, 3]
"""


def spec(extra: str = "", controls: str = "[shuffled_labels, random_neurons]"):
    return validate_spec_text(SPEC + f"controls: {controls}\n{extra}", "test.yaml", PluginRegistry())


def planted(n: int = 600, d: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Neuron 7 separates the classes (shift 4 standard deviations); the others are noise."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 7] += 4.0 * y
    return X, y


def cells_of(X: np.ndarray, y: np.ndarray, controls: str = "[shuffled_labels, random_neurons]") -> list[dict]:
    validated = spec(controls=controls)
    feature = Feature("planted", np.arange(len(y)), y)
    split = split_feature(y, np.arange(len(y)), 0.3, 42, "group")
    selectors = [(ref, ref.instantiate()) for ref in validated.selectors]
    return probe_cells(validated.spec, selectors, X, feature, split, 0, lambda f, layer, key: repr(key), set())


def by_hand(X_train, y_fit, X_test, y_test, chosen) -> float:
    probe = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(X_train[:, chosen], y_fit)
    return f1_score(y_test, probe.predict(X_test[:, chosen]))


def test_the_controls_are_the_probe_on_shuffled_labels_and_on_random_neurons() -> None:
    X, y = planted()
    rows = cells_of(X, y)
    split = split_feature(y, np.arange(len(y)), 0.3, 42, "group")
    X_train, X_test, y_train, y_test = X[split.train], X[split.test], y[split.train], y[split.test]
    # documented seeding: one permutation per (split seed, feature), the same for every selector and layer
    y_shuffled = np.random.default_rng([42, zlib.crc32(b"planted")]).permutation(y_train)
    assert sorted(y_shuffled) == sorted(y_train) and not np.array_equal(y_shuffled, y_train)
    difference = np.abs(X_train[y_shuffled].mean(0) - X_train[~y_shuffled].mean(0))
    for row in rows:
        chosen = np.asarray(row["neuron_indices"])
        if row["control"] == "shuffled_labels":
            if row["selector"] == "mean_diff":
                # the k neurons with the largest class-mean difference of the shuffled labels
                assert chosen.tolist() == np.argsort(-difference, kind="stable")[: row["k"]].tolist()
            # trained on the shuffled labels, scored on the true test labels
            assert row["f1"] == pytest.approx(by_hand(X_train, y_shuffled, X_test, y_test, chosen))
        elif row["control"] == "random_neurons":
            assert row["selector"] == "" and len(set(chosen)) == row["k"] and chosen.max() < X.shape[1]
            assert row["f1"] == pytest.approx(by_hand(X_train, y_train, X_test, y_test, chosen))
        else:
            assert row["control"] == "" and row["f1"] == pytest.approx(by_hand(X_train, y_train, X_test, y_test,
                                                                               chosen))
    kinds = sorted({(row["control"], row["selector"]) for row in rows})
    assert kinds == [("", "f_stat"), ("", "mean_diff"), ("random_neurons", ""), ("shuffled_labels", "f_stat"),
                     ("shuffled_labels", "mean_diff")]
    assert len(rows) == 2 * 2 + 2 * 2 + 2  # probes, shuffled per selector, random once per k
    # random draws differ by k and are reproducible
    again = cells_of(X, y)
    assert [r["neuron_indices"] for r in again] == [r["neuron_indices"] for r in rows]


def test_a_planted_neuron_is_selective_and_random_labels_are_not() -> None:
    X, y = planted(n=1500)
    rows = cells_of(X, y)
    probe = next(r for r in rows if r["control"] == "" and r["k"] == 1 and r["selector"] == "mean_diff")
    shuffled = next(r for r in rows if r["control"] == "shuffled_labels" and r["k"] == 1
                    and r["selector"] == "mean_diff")
    assert probe["neurons"] == ["L0.N7"] and probe["f1"] > 0.9
    positive_rate = y.mean()
    assert shuffled["f1"] < 2 * positive_rate / (1 + positive_rate) + 0.1  # about chance: no better than "all positive"
    # labels unrelated to the activations: the probe is no better than its shuffled control
    noise = np.random.default_rng(5).random(len(y)) < 0.3
    rows = cells_of(X, noise)
    table = with_selectivity(pa.Table.from_pylist([{**r, "model": "m", "dataset": "d"} for r in rows],
                                                  schema=RESULT_SCHEMA))
    selectivity = [v for v in table.column("selectivity_shuffled").to_pylist() if v is not None]
    assert len(selectivity) == 4 and max(abs(v) for v in selectivity) < 0.15


def test_controls_added_to_a_finished_run_compute_only_themselves_and_resume(tmp_path: Path) -> None:
    output = f"output: {tmp_path / 'run'}\ncache: {tmp_path / 'cache'}\n"
    first = run_sweep(spec(output, controls="[]"))
    probes = pq.read_table(tmp_path / "run" / "results").to_pylist()
    assert first.new_rows == len(probes) == 2 * 2 * 2 * 2  # features x layers x selectors x ks
    second = run_sweep(spec(output))  # controls do not change the fingerprint: the same run directory
    assert second.new_rows == 2 * 2 * (2 * 2 + 2) and second.reused_cells == len(probes)
    assert run_sweep(spec(output)).new_rows == 0
    table = RunDirectory(tmp_path / "run").read_results()
    rows = table.to_pylist()
    unchanged = {r["cell_id"]: r["f1"] for r in rows if r["control"] == ""}
    assert unchanged == {r["cell_id"]: r["f1"] for r in probes}
    control = {(r["control"], r["feature"], r["layer"], r["selector"], r["k"]): r["f1"] for r in rows if r["control"]}
    for row in rows:
        if row["control"]:
            assert row["selectivity_shuffled"] is None and row["selectivity_random"] is None
            continue
        key = (row["feature"], row["layer"], row["k"])
        assert row["selectivity_shuffled"] == pytest.approx(
            row["f1"] - control[("shuffled_labels", key[0], key[1], row["selector"], key[2])])
        assert row["selectivity_random"] == pytest.approx(row["f1"] - control[("random_neurons", key[0], key[1], "",
                                                                                key[2])])


def test_the_processes_executor_computes_the_same_control_rows(tmp_path: Path) -> None:
    def rows(name: str, executor: str = "") -> list[dict]:
        run_sweep(spec(f"output: {tmp_path / name}\ncache: {tmp_path / 'cache'}\n{executor}"))
        return sorted(({k: v for k, v in r.items() if not k.endswith("_seconds")}
                       for r in pq.read_table(tmp_path / name / "results").to_pylist()), key=lambda r: r["cell_id"])

    local = rows("local")
    assert local == rows("processes", "executor: {plugin: processes, params: {workers: 2}, pairs_per_unit: 1}\n")
    assert sum(1 for r in local if r["control"]) == 2 * 2 * (2 * 2 + 2)


def test_result_parts_of_an_older_probekit_read_as_probe_rows(tmp_path: Path) -> None:
    X, y = planted()
    rows = [{**r, "model": "m", "dataset": "d"} for r in cells_of(X, y, controls="[]")]
    old = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA).drop_columns(
        ["control", "selectivity_shuffled", "selectivity_random"])
    (tmp_path / "results").mkdir()
    pq.write_table(old, tmp_path / "results" / "part-old.parquet")
    table = RunDirectory(tmp_path).read_results()
    assert table.num_rows == len(rows) and set(table.column("control").to_pylist()) == {""}
    assert set(table.column("selectivity_shuffled").to_pylist()) == {None}


def test_a_repeated_control_is_a_spec_error() -> None:
    with pytest.raises(Exception, match="each control once"):
        spec(controls="[random_neurons, random_neurons]")


@pytest.mark.slow
def test_minilm_digit_neurons_are_selective_and_random_labels_are_not(minilm) -> None:
    from probekit.extraction import extract_activations
    from probekit_plugins.datasets.text_features import TextFeatures

    params = TextFeatures.Params(source={"kind": "stdlib"}, max_sequences=400, sequence_length=128,
                                 min_positive_rate=0.01, features=["contains_digit"])
    dataset = TextFeatures(params).build(minilm.tokenizer)
    X = extract_activations(minilm, dataset, [0])[0]
    feature = dataset.features[0]
    rows = cells_of(X[feature.sites], feature.labels)
    table = with_selectivity(pa.Table.from_pylist([{**r, "model": "m", "dataset": "d"} for r in rows],
                                                  schema=RESULT_SCHEMA)).to_pylist()
    best = next(r for r in table if r["control"] == "" and r["k"] == 1 and r["selector"] == "mean_diff")
    shuffled = next(r for r in table if r["control"] == "shuffled_labels" and r["k"] == 1
                    and r["selector"] == "mean_diff")
    rate = feature.labels.mean()
    assert best["f1"] > 0.9 and shuffled["f1"] < 2 * rate / (1 + rate) + 0.1
    assert best["selectivity_shuffled"] > 0.5 and best["selectivity_random"] > 0.3
    noise = np.random.default_rng(0).permutation(feature.labels)
    rows = cells_of(X[feature.sites], noise)
    table = with_selectivity(pa.Table.from_pylist([{**r, "model": "m", "dataset": "d"} for r in rows],
                                                  schema=RESULT_SCHEMA))
    assert max(abs(v) for v in table.column("selectivity_shuffled").to_pylist() if v is not None) < 0.15
