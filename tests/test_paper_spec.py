"""examples/paper.yaml, the spec of the paper's study (Gurnee et al. 2023), says what a reader relies on: the seven
Pythia sizes, the ten feature collections, every layer, the paper's selectors at its settings and k = 1..8, and a
Slurm executor that asks for GPUs for extraction only, writing to absolute shared paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from probekit.cli import app
from probekit.registry import PluginRegistry
from probekit.spec import ValidatedSpec, load_spec

SPEC = Path(__file__).resolve().parents[1] / "examples" / "paper.yaml"

SIZES = ["70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b"]

PILE_TEST = "monology/pile-uncopyrighted"


@pytest.fixture(scope="module")
def paper() -> ValidatedSpec:
    return load_spec(SPEC, PluginRegistry())


def test_validates_through_the_cli() -> None:
    result = CliRunner().invoke(app, ["validate", str(SPEC)])
    assert result.exit_code == 0, result.output
    assert "valid (fingerprint" in result.output
    assert "7 model(s), 10 dataset(s)" in result.output


def test_seven_pythia_models_on_the_gpu(paper: ValidatedSpec) -> None:
    assert [model.name for model in paper.models] == ["pythia"] * 7
    assert [model.params.name for model in paper.models] == [f"pythia-{size}" for size in SIZES]
    assert [model.label for model in paper.models] == [f"pythia-{size}" for size in SIZES]
    assert {model.params.device for model in paper.models} == {"cuda"}
    assert {model.params.revision for model in paper.models} == {None}  # the final checkpoint


def test_ten_collections(paper: ValidatedSpec) -> None:
    by_label = {dataset.label: dataset for dataset in paper.datasets}
    assert list(by_label) == ["text_features", "compound_words", "natural_language", "code_language", "data_subset",
                              "part_of_speech", "dependencies", "morphology", "latex", "people"]
    assert [dataset.name for dataset in paper.datasets] == [
        "text_features", "compound_words", "natural_language", "code_language", "data_subset", "ud", "ud", "ud",
        "latex", "people"]
    # one UD feature group per collection
    assert [by_label[label].params.features for label in ("part_of_speech", "dependencies", "morphology")] == [
        ["upos"], ["dep"], ["morph"]]


def test_hub_sources_where_the_plugins_take_them(paper: ValidatedSpec) -> None:
    by_label = {dataset.label: dataset.params for dataset in paper.datasets}
    for label in ("text_features", "compound_words", "people"):  # the Pile test set
        source = by_label[label].source
        assert (source.kind, source.dataset, source.split) == ("hub", PILE_TEST, "test"), label
    code = by_label["code_language"].source
    assert (code.kind, code.dataset, code.text_field, code.label_field) == (
        "hub", "codeparrot/github-code", "code", "language")
    subsets = by_label["data_subset"].source
    assert subsets.kind == "mixture"
    assert sorted(subsets.parts) == sorted(["github", "pubmed_abstracts", "stack_exchange", "wikipedia", "freelaw",
                                            "hackernews", "arxiv", "enron", "uspto"])  # the paper's nine subsets
    assert {(part.kind, part.dataset, part.split) for part in subsets.parts.values()} == {
        ("hub", "ArmelR/the-pile-splitted", "test")}
    # the Pile's EuroParl languages live in `meta`, which a hub source cannot read: a local table, absolute
    assert by_label["natural_language"].source.kind == "table"
    for path in (by_label["natural_language"].source.path, by_label["part_of_speech"].path, by_label["latex"].path,
                 by_label["people"].table):
        assert Path(path).is_absolute(), path


def test_the_papers_dataset_settings(paper: ValidatedSpec) -> None:
    by_label = {dataset.label: dataset.params for dataset in paper.datasets}
    assert (by_label["text_features"].sequence_length, by_label["text_features"].max_sequences) == (256, 10000)
    compound = by_label["compound_words"]
    assert compound.window_length == 24
    assert len(compound.bigrams) == 21 and "social security" in compound.bigrams  # the paper's default list
    assert (by_label["natural_language"].sequence_length, by_label["natural_language"].skip_first) == (512, 1)
    assert sorted(by_label["natural_language"].labels) == sorted(["en", "de", "fr", "es", "it", "nl", "pt", "sv",
                                                                  "el"])
    code = by_label["code_language"]
    assert (code.sequence_length, code.skip_first) == (512, 50)
    assert sorted(code.labels) == sorted(["Python", "XML", "Java", "C++", "HTML", "C", "Go", "PHP", "JavaScript"])
    assert (by_label["data_subset"].sequence_length, by_label["data_subset"].skip_first) == (512, 25)
    assert {by_label[label].sequence_length for label in ("part_of_speech", "dependencies", "morphology")} == {512}
    assert (by_label["latex"].sequence_length, by_label["latex"].max_sequences) == (1024, 4486)
    people = by_label["people"]
    assert (people.window_length, people.max_per_name, people.min_occurrences) == (128, 3, 2)


def test_every_layer(paper: ValidatedSpec) -> None:
    assert paper.spec.layers == "all"


def test_the_papers_selectors_and_ks(paper: ValidatedSpec) -> None:
    selectors = {selector.label: selector.params for selector in paper.selectors}
    assert list(selectors) == ["random", "mean_diff", "f_stat", "mutual_info", "l1_logreg", "adaptive_threshold",
                               "osp"]
    assert selectors["random"].pool == 512
    assert selectors["adaptive_threshold"].start == 256
    osp = selectors["osp"]
    assert (osp.candidates, osp.time_limit, osp.scaling, osp.gamma) == (50, 60, "paper", None)  # 1/sqrt(n_train)
    assert paper.spec.ks == [1, 2, 3, 4, 5, 6, 7, 8]
    assert paper.spec.prefilter == 1024
    assert (paper.spec.split.test_fraction, paper.spec.split.seed) == (0.3, 42)


def test_slurm_with_gpus_for_extraction_only(paper: ValidatedSpec) -> None:
    assert paper.spec.executor.plugin == "slurm"
    assert paper.executor.name == "slurm"
    params = paper.executor.params
    assert params.extraction.gpus >= 1
    assert params.extraction.partition == "gpu"
    assert params.probe.gpus == 0
    assert params.probe.partition in (None, params.partition)
    assert params.partition == "cpu"
    assert params.array_parallelism == 256
    assert paper.spec.executor.pairs_per_unit == 32
    assert paper.spec.executor.max_retries == 1


def test_absolute_output_and_cache(paper: ValidatedSpec) -> None:
    assert Path(paper.spec.output).is_absolute()
    assert paper.spec.cache is not None and Path(paper.spec.cache).is_absolute()
