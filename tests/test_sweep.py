"""The sweep on the in-memory FakeModel: result rows checked against independent computations, resume, interruption.

Expected rows are recomputed from the fake model's closed form (``FakeModel.neuron_values``) and scikit-learn, not
through the extraction engine. The end-to-end tests (test_cli.py's quickstart, faults/, plugins/) keep the real
MiniLM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from probekit.errors import RunError
from probekit.registry import PluginRegistry
from probekit.spec import validate_spec_text
from probekit.sweep import run_sweep
from probekit.testing import FakeModel

pytestmark = pytest.mark.usefixtures("fake_model_plugin")  # model plugin `fake`, registered through an entry point

# three token features the fake model has detector neurons for, and is_not_ascii, which no token of these windows is
FEATURES = ["all_digits", "leading_capital", "has_leading_space", "is_not_ascii"]
DATASET_PARAMS = {"max_sequences": 60, "sequence_length": 64, "max_examples": 300, "min_positive_rate": 0.02,
                  "features": FEATURES}


def spec_text(output: Path, selectors: str = "  - plugin: mean_diff\n") -> str:
    return (
        "models:\n  - plugin: fake\n"
        "datasets:\n  - plugin: text_features\n"
        "    params: {max_sequences: 60, sequence_length: 64, max_examples: 300, min_positive_rate: 0.02,\n"
        f"             features: [{', '.join(FEATURES)}]}}\n"
        f"layers: [0, 1]\nselectors:\n{selectors}ks: [1, 2]\noutput: {output}\n"
    )


def run(text: str):
    return run_sweep(validate_spec_text(text, "test.yaml", PluginRegistry()))


def parts(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "results").glob("*"))}


def test_rows_agree_with_independent_computation(tmp_path: Path, fake_model: FakeModel) -> None:
    summary = run(spec_text(tmp_path / "run") + "split: {by: site}\n")  # the plain stratified split, as sklearn does
    table = pq.read_table(tmp_path / "run" / "results")
    features = sorted(set(table.column("feature").to_pylist()))
    assert summary.new_rows == table.num_rows == len(features) * 2 * 2  # features x layers x ks
    assert "all_digits" in features

    # rebuild the data independently of the sweep and of the extraction engine (the closed form on each unpadded
    # sequence, read at the feature's sites) and check the k=1 row of all_digits at layer 1
    text_features = PluginRegistry().get("datasets", "text_features")
    dataset = text_features(text_features.Params(**DATASET_PARAMS)).build(fake_model.tokenizer)
    feature = next(f for f in dataset.features if f.name == "all_digits")
    sites = dataset.sites
    X = np.stack([fake_model.neuron_values(dataset.sequences[sites.sequence[site]], [1])[1][sites.start[site]]
                  for site in feature.sites])
    y = feature.labels
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
    train, test = np.sort(train), np.sort(test)
    gaps = [abs(X[train][y[train], j].mean() - X[train][~y[train], j].mean()) for j in range(X.shape[1])]

    row = next(r for r in table.to_pylist() if (r["feature"], r["layer"], r["k"]) == ("all_digits", 1, 1))
    assert row["neuron_indices"] == [int(np.argmax(gaps))]
    assert row["neurons"] == [f"L1.N{int(np.argmax(gaps))}"]
    assert row["neuron_indices"] == [fake_model.planted_neurons(1)["digit"]]  # the planted digit detector
    assert (row["n_train"], row["n_test"]) == (len(train), len(test))
    scores = X[test][:, row["neuron_indices"]] @ np.asarray(row["coefficients"]) + row["intercept"]
    assert row["f1"] == pytest.approx(f1_score(y[test], scores > 0))
    assert row["f1"] > 0.8  # one planted neuron reads digits


def test_second_run_computes_nothing_and_loads_no_model(tmp_path: Path, monkeypatch) -> None:
    run(spec_text(tmp_path / "run"))
    before = parts(tmp_path / "run")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although every cell was finished")

    monkeypatch.setattr(FakeModel, "__init__", no_loading)
    summary = run(spec_text(tmp_path / "run"))
    assert summary.new_rows == 0
    assert summary.reused_cells == pq.read_table(tmp_path / "run" / "results").num_rows
    assert parts(tmp_path / "run") == before


FLAKY = """
    from probekit.contracts import PluginParams, Selection, Selector
    calls = [0]

    class Flaky(Selector):
        '''Top-k columns by variance; the second call ever fails, like a crash mid-run.'''

        def select(self, X_train, y_train, ks):
            calls[0] += 1
            if calls[0] == 2:
                raise MemoryError("simulated crash")
            order = X_train.var(axis=0).argsort()[::-1]
            return {k: Selection(order[:k]) for k in ks}
"""


def test_interrupted_run_keeps_finished_cells_and_resumes(tmp_path: Path, install_fake_distribution) -> None:
    install_fake_distribution("flaky-selector", FLAKY, {"probekit.selectors": {"flaky": "Flaky"}})
    text = spec_text(tmp_path / "run", selectors="  - plugin: flaky\n")
    with pytest.raises(RunError, match="selector 'flaky' failed on feature .*MemoryError: simulated crash"):
        run(text)
    files = list((tmp_path / "run" / "results").iterdir())
    assert len(files) == 1 and files[0].suffix == ".parquet"  # one finished (feature, layer) group, no temp files
    first = pq.read_table(files[0])
    assert first.num_rows == 2
    assert not list((tmp_path / "run").glob(".*.tmp"))

    summary = run(text)  # resumes: the crash does not repeat
    table = pq.read_table(tmp_path / "run" / "results")
    assert summary.reused_cells == 2 and summary.new_rows == table.num_rows - 2
    assert len(set(table.column("cell_id").to_pylist())) == table.num_rows
    assert set(first.column("cell_id").to_pylist()) <= set(table.column("cell_id").to_pylist())


def test_a_different_spec_cannot_reuse_the_directory(tmp_path: Path) -> None:
    run(spec_text(tmp_path / "run"))
    before = parts(tmp_path / "run")
    with pytest.raises(RunError, match="holds the results of a different spec"):
        run(spec_text(tmp_path / "run").replace("ks: [1, 2]", "ks: [1, 3]"))
    assert parts(tmp_path / "run") == before


def test_layer_beyond_the_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"model 'fake' has 2 layers \(0-1\); no layer \[7\]"):
        run(spec_text(tmp_path / "run").replace("layers: [0, 1]", "layers: [0, 7]"))


def test_a_directory_without_results_can_be_reused_after_fixing_the_spec(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no layer"):
        run(spec_text(tmp_path / "run").replace("layers: [0, 1]", "layers: [9]"))
    summary = run(spec_text(tmp_path / "run"))  # a different spec, but the failed run left nothing to protect
    assert summary.new_rows > 0


def test_result_files_are_shared_readable_and_carry_selection_scores(tmp_path: Path) -> None:
    run(spec_text(tmp_path / "run"))
    for path in [tmp_path / "run" / "run.json", *(tmp_path / "run" / "results").iterdir()]:
        assert path.stat().st_mode & 0o044 == 0o044, path  # group and others may read (umask 022 here)
    rows = pq.read_table(tmp_path / "run" / "results").to_pylist()
    for row in rows:
        assert len(row["selection_scores"]) == row["k"]
        assert row["selection_scores"] == sorted(row["selection_scores"], reverse=True)  # mean_diff, best first


BROKEN_ADAPTER = """
    from probekit.testing import FakeModel

    class Broken(FakeModel):
        '''FakeModel whose extraction fails, as when the weights cannot be loaded.'''

        def activations(self, batch, layers, sites):
            raise KeyError("weights.bin")
"""


def test_a_failing_adapter_is_reported_by_name(tmp_path: Path, install_fake_distribution) -> None:
    install_fake_distribution("broken-adapter", BROKEN_ADAPTER, {"probekit.models": {"broken_fake": "Broken"}})
    text = spec_text(tmp_path / "run").replace("plugin: fake", "plugin: broken_fake") + \
        f"cache: {tmp_path / 'cache'}\n"
    with pytest.raises(RunError, match="model 'broken_fake' failed while extracting .*KeyError: 'weights.bin'"):
        run(text)


def test_on_bad_feature_error_stops_before_probing(tmp_path: Path) -> None:
    text = spec_text(tmp_path / "run") + "on_bad_feature: error\n"
    with pytest.raises(RunError, match=r"dataset 'text_features', feature '\w+' \(model 'fake'\): .*on_bad_feature"):
        run(text)  # text_features reports is_not_ascii as skipped: no token of these windows is non-ASCII
    assert not (tmp_path / "run" / "results").exists()


def test_min_per_class_skips_thin_features(tmp_path: Path) -> None:
    summary = run(spec_text(tmp_path / "run") + "min_per_class: 100\n")
    reasons = [s.reason for s in summary.skipped_features]
    assert any("need 100 of each" in r for r in reasons)


def test_every_built_in_selector_runs_in_a_sweep(tmp_path: Path) -> None:
    selectors = "".join(f"  - plugin: {name}\n" for name in
                        ("mean_diff", "random", "f_stat", "mutual_info", "l1_logreg", "adaptive_threshold"))
    run(spec_text(tmp_path / "run", selectors=selectors).replace("layers: [0, 1]", "layers: [0]"))
    rows = pq.read_table(tmp_path / "run" / "results").to_pylist()
    by_selector = {}
    for row in rows:
        by_selector.setdefault(row["selector"], set()).add((row["feature"], row["k"]))
        assert len(set(row["neuron_indices"])) == row["k"]
    assert set(by_selector) == {"mean_diff", "random", "f_stat", "mutual_info", "l1_logreg", "adaptive_threshold"}
    assert len({frozenset(cells) for cells in by_selector.values()}) == 1  # every selector filled every cell
