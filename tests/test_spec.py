"""Run spec validation: plugin params checked by each plugin, errors with file, line and spec path."""

from __future__ import annotations

from pathlib import Path

import pytest

from probekit.errors import SpecError
from probekit.registry import PluginRegistry
from probekit.spec import load_spec, validate_spec_text

VALID = """\
name: demo
models:
  - plugin: minilm
datasets:
  - plugin: text_features
    params: {max_sequences: 10}
layers: [0, "2-3"]
selectors:
  - plugin: mean_diff
ks: "1-4"
output: runs/demo
"""


def validate(text: str):
    return validate_spec_text(text, "spec.yaml", PluginRegistry())


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as error:
        validate(text)
    return error.value.problems


def test_valid_spec_is_normalised_and_resolved() -> None:
    validated = validate(VALID)
    spec = validated.spec
    assert spec.layers == [0, 2, 3]
    assert spec.ks == [1, 2, 3, 4]
    assert spec.prefilter == 1024 and spec.split.test_fraction == 0.3 and spec.probe.C == 1.0
    assert [m.label for m in validated.models] == ["minilm"]
    assert validated.datasets[0].params.max_sequences == 10
    # normalised params carry every default, so the fingerprint sees effective values
    assert spec.datasets[0].params["sequence_length"] == 128


def test_fingerprint_is_stable_and_content_based() -> None:
    first, again = validate(VALID).spec.fingerprint, validate(VALID).spec.fingerprint
    assert first == again
    reformatted = VALID.replace('params: {max_sequences: 10}', 'params:\n      max_sequences: 10')
    assert validate(reformatted).spec.fingerprint == first
    explicit_default = VALID.replace("{max_sequences: 10}", "{max_sequences: 10, sequence_length: 128}")
    assert validate(explicit_default).spec.fingerprint == first
    assert validate(VALID.replace("runs/demo", "elsewhere")).spec.fingerprint == first  # output does not count
    assert validate(VALID.replace('"1-4"', '"1-5"')).spec.fingerprint != first


def test_fingerprint_ignores_what_cannot_change_results() -> None:
    first = validate(VALID).spec.fingerprint
    assert validate(VALID.replace("name: demo", "name: renamed")).spec.fingerprint == first
    assert validate(VALID + "extraction: {batch_tokens: 512}\n").spec.fingerprint == first
    assert validate(VALID + "cache: elsewhere\n").spec.fingerprint == first
    relabelled = VALID.replace("  - plugin: mean_diff\n", "  - plugin: mean_diff\n    label: mean_diff\n")
    assert validate(relabelled).spec.fingerprint == first
    assert validate(VALID.replace("ks: \"1-4\"", "ks: \"1-4\"\nsplit: {seed: 7}")).spec.fingerprint != first


def test_union_tags_do_not_appear_in_paths() -> None:
    text = VALID.replace("{max_sequences: 10}", "{source: {kind: jsonl, path: 3, colour: red}}")
    found = problems(text)
    assert any(p.startswith("line 6: datasets[0].params.source.path: Input should be a valid string") for p in found)
    expected = "line 6: datasets[0].params.source.colour: unknown key. Known: kind, path, text_field."
    assert any(p.startswith(expected) for p in found), found
    missing = problems(VALID.replace("{max_sequences: 10}", "{source: {kind: jsonl}}"))
    assert missing == ["line 6: datasets[0].params.source.path: Field required"]


def test_plugin_param_error_names_path_and_line() -> None:
    text = VALID.replace("{max_sequences: 10}", "{max_sequences: many}")
    assert problems(text) == [
        "line 6: datasets[0].params.max_sequences: Input should be a valid integer, unable to parse string as an "
        "integer"
    ]


def test_unknown_param_and_unknown_plugin_are_both_reported() -> None:
    text = VALID.replace("{max_sequences: 10}", "{max_sequence: 10}").replace("mean_diff", "mean_dif")
    found = problems(text)
    assert any(p.startswith("line 6: datasets[0].params.max_sequence: unknown key. Did you mean 'max_sequences'?")
               for p in found)
    assert any(p.startswith("line 9: selectors[0].plugin: unknown selectors 'mean_dif'") and "mean_diff" in p
               for p in found)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("ks: \"1-4\"", "ks: [0, 1]"), "line 10: ks: every k must be >= 1"),
        (("ks: \"1-4\"", "ks: \"4-1\""), "line 10: ks: range '4-1' is empty"),
        (("layers: [0, \"2-3\"]", "layers: [-1]"), "line 7: layers: layer indices must be >= 0"),
        (("layers: [0, \"2-3\"]", "layers: everything"), "line 7: layers: 'everything' is neither an integer"),
        (("ks: \"1-4\"", "ks: \"1-4\"\nprefilter: 3"), "line 10: ks: '1-4' goes beyond prefilter (3): no k can exceed"),
        (("name: demo", "name: demo\nsplit: {test_fraction: 1.5}"), "split.test_fraction: Input should be less than 1"),
        (("name: demo", "name: demo\ncolour: blue"), "colour: unknown key. Known: cache, controls, datasets,"),
    ],
)
def test_settings_errors(change: tuple[str, str], expected: str) -> None:
    found = problems(VALID.replace(*change))
    assert any(expected in p for p in found), found


def test_duplicate_labels_are_refused() -> None:
    text = VALID.replace("  - plugin: mean_diff\n", "  - plugin: mean_diff\n  - plugin: mean_diff\n")
    assert any("selectors[1].label: 'mean_diff' is used twice" in p for p in problems(text))
    relabelled = VALID.replace("  - plugin: mean_diff\n", "  - plugin: mean_diff\n  - plugin: mean_diff\n"
                                                          "    label: md2\n")
    assert [s.label for s in validate(relabelled).selectors] == ["mean_diff", "md2"]


def test_yaml_syntax_error_names_the_line() -> None:
    found = problems("models:\n  - plugin: minilm\n  bad: [unclosed\n")
    assert len(found) == 1 and found[0].startswith("line ") and "not valid YAML" in found[0]


def test_yaml_is_loaded_safely() -> None:
    found = problems("!!python/object/apply:os.system ['echo hacked']\n")
    assert "not valid YAML" in found[0]


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml", PluginRegistry())
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(tmp_path / "list.yaml", PluginRegistry())


def test_output_override(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(VALID)
    validated = load_spec(tmp_path / "spec.yaml", PluginRegistry(), output=tmp_path / "out")
    assert validated.spec.output == tmp_path / "out"


def test_a_selector_that_crashes_while_checking_ks_is_named(install_fake_distribution) -> None:
    install_fake_distribution("picky-pkg", """
        from probekit.contracts import Selection, Selector

        class Picky(Selector):
            '''Refuses to say which ks it can choose.'''

            def select(self, X_train, y_train, ks):
                return {k: Selection(list(range(k))) for k in ks}

            def ks_problem(self, ks, n_columns):
                raise ZeroDivisionError("no idea")
    """, {"probekit.selectors": {"picky": "Picky"}})
    found = problems(VALID.replace("  - plugin: mean_diff\n", "  - plugin: picky\n"))
    assert found == ["line 9: selectors[0].params: selector plugin 'picky' failed while checking ks: "
                     "ZeroDivisionError: no idea"]
