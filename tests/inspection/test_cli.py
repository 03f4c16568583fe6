"""`probekit inspect`: one clear message and exit code 2 for every bad input, the saved numbers (Parquet, JSON) and
figures, runs reused through --from-run (model, dataset, activation cache) and neuron ids as the results write them.

Most tests run on the weightless FakeModel (`fake_model_plugin`: 2 layers of 64 neurons, instant); MiniLM and a
tiny random GPT-NeoX cover what FakeModel lacks (an encoder without a language-model head; weights, unembedding and
ablation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from probekit.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200"}

# two datasets of the fake model's own tokens: --from-run must be told which one
SPEC = """\
models:
  - plugin: fake
datasets:
  - plugin: text_features
    label: prose
    params: {max_sequences: 40, sequence_length: 64, max_examples: 200, min_positive_rate: 0.02,
             features: [contains_digit, leading_capital, has_leading_space]}
  - plugin: text_features
    label: small
    params: {max_sequences: 10, sequence_length: 64, max_examples: 100, min_positive_rate: 0.02,
             features: [contains_digit]}
layers: [0, 1]
selectors:
  - plugin: mean_diff
ks: [1, 3]
"""

TEXT = """\
In 1984 the museum opened 12 new rooms; in 2023 it had 365 visitors a day.
def add(a, b):
    return a + b  # returns the sum of the two numbers
Alice met Bob in Paris on Monday. On Friday, Carol flew from Berlin to Rome.
"""


def inspect(*args: str):
    return runner.invoke(app, ["inspect", *args], env=ENV)


def assert_refused(result, *phrases: str) -> str:
    """Exit code 2, one line `error: ...` on stderr naming each phrase, nothing on stdout but progress, no trace."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)  # no uncaught exception
    return message


def table_rows(stdout: str, title: str) -> list[list[str]]:
    """The body cells of the terminal table printed under ``title``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = []
    for line in lines[start + 4:]:  # title, top border, header, header rule
        if not line.startswith("│"):
            break
        rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value).strip()  # cells lose their edge spaces


def shown_row(row: dict) -> list[str]:
    """A Parquet row as the terminal table shows it: tokens quoted, so that leading spaces are visible."""
    return [repr(value) if name == "token" else shown(value) for name, value in row.items()]


@pytest.fixture
def fake_run(tmp_path: Path, fake_model_plugin: str) -> Path:
    """A finished run of the fake model on two datasets; its activation cache is ./.probekit-cache (cwd: tmp_path)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    result = runner.invoke(app, ["run", str(spec), "--output", str(tmp_path / "run")], env=ENV)
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    directory = tmp_path / "texts"
    directory.mkdir()
    for i in range(3):
        (directory / f"part{i}.txt").write_text(TEXT * (i + 2))
    return directory


# ------------------------------------------------------------------------------------------------------------------
# bad input: exit code 2, one message naming the problem and what is valid


def test_neuron_ids_out_of_range_or_malformed(fake_model_plugin: str) -> None:
    model = ["--model", "fake", "--dataset", "text_features"]
    assert_refused(inspect("by-class", "L2.N0", *model), "neuron L2.N0", "model 'fake' has layers 0-1")
    assert_refused(inspect("by-class", "L0.N1", "L0.N64", *model), "neuron L0.N64",
                   "model 'fake' has neurons 0-63 in each layer")
    wider = inspect("by-class", "L2.N70", *model, "--model-params", "{n_layers: 3, d_mlp: 70}")
    assert_refused(wider, "neuron L2.N70", "neurons 0-69")
    for bad in ("L0N5", "foo", "L0.N5,L1.5"):
        part = bad.split(",")[-1]
        assert_refused(inspect("max-activating", bad, "--model", "fake"), f"'{part}' is not a neuron id",
                       "L<layer>.N<index>", "L0.N787")
    assert_refused(inspect("vocab", ",", "--model", "fake"), "name at least one neuron")


def test_unknown_or_missing_feature_lists_the_datasets_features(fake_run: Path) -> None:
    run = ["--from-run", str(fake_run), "--dataset", "prose"]
    assert_refused(inspect("by-class", "L0.N1", *run, "--feature", "nope"), "dataset 'prose' has no feature 'nope'",
                   "its features: contains_digit, leading_capital, has_leading_space")
    assert_refused(inspect("by-class", "L0.N1", *run), "choose a feature with --feature",
                   "contains_digit, leading_capital, has_leading_space")
    assert_refused(inspect("vocab", "L0.N1", *run, "--split-by", "nope"), "no feature 'nope'", "contains_digit")


def test_from_run_problems(fake_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert_refused(inspect("by-class", "L0.N1", "--from-run", str(missing)), f"--from-run {missing}: no such directory")
    assert_refused(inspect("by-class", "L0.N1", "--from-run", str(tmp_path)),
                   f"--from-run {tmp_path}: not a probekit run directory (no run.json)")
    assert_refused(inspect("by-class", "L0.N1", "--from-run", str(fake_run), "--feature", "contains_digit"),
                   "the run has several datasets (prose, small); choose one with --dataset")
    assert_refused(inspect("by-class", "L0.N1", "--from-run", str(fake_run), "--dataset", "big"),
                   "has no dataset 'big'; its datasets: prose, small")
    assert_refused(inspect("logits", "L0.N1", "--from-run", str(fake_run), "--model", "other"),
                   "has no model 'other'; its models: fake")
    for option in ("--model-params", "--dataset-params"):
        assert_refused(inspect("by-class", "L0.N1", "--from-run", str(fake_run), option, "{seed: 1}"),
                       f"{option} cannot be combined with --from-run")


def test_unknown_model_and_bad_params(fake_model_plugin: str) -> None:
    message = assert_refused(inspect("weights", "--model", "nosuch"), "unknown models 'nosuch'")
    assert "fake" in message and "minilm" in message  # the known plugins
    assert_refused(inspect("weights", "--model", "fake", "--model-params", "{n_layers: [1"), "--model-params",
                   "not valid YAML")
    assert_refused(inspect("weights", "--model", "fake", "--model-params", "[1, 2]"), "--model-params",
                   "give a mapping")
    assert_refused(inspect("weights", "--model", "fake", "--model-params", "{n_layer: 3}"), "--model-params",
                   "n_layer: unknown key")
    assert_refused(inspect("by-class", "L0.N1", "--model", "fake", "--dataset", "text_features", "--dataset-params",
                           "{max_sequences: -1}"), "--dataset-params", "max_sequences")
    assert_refused(inspect("weights"), "name the model: --model PLUGIN")
    assert_refused(inspect("by-class", "L0.N1", "--model", "fake"), "this analysis needs a dataset")


def test_bad_options(fake_model_plugin: str, texts: Path) -> None:
    text = ["--model", "fake", "--text", str(texts)]
    for band in ("0.99-0.9", "0.9-1.5", "0.5-0.5"):
        assert_refused(inspect("max-activating", "L0.N1", *text, "--band", band), f"--band {band}",
                       "0 <= low < high <= 1")
    assert_refused(inspect("max-activating", "L0.N1", *text, "--band", "top"), "--band top", "LOW-HIGH")
    assert_refused(inspect("weights", "--model", "fake", "--layers", "9"), "--layers 9",
                   "beyond the last layer of 'fake' (1)")
    assert_refused(inspect("weights", "L0.N1", "--model", "fake", "--layers", "0-x"), "--layers 0-x")
    assert_refused(inspect("vocab", "L0.N1", *text, "--dataset", "text_features", "--split-by", "contains_digit"),
                   "--split-by", "cannot be combined with --text")
    assert_refused(inspect("ablate", "L0.N1", "--model", "fake", "--mode", "foo"), "--mode foo",
                   "choose zero or mean")
    assert_refused(inspect("max-activating", "L0.N1", "--model", "fake", "--text", str(texts / "*.md")),
                   "--text")


def test_fake_model_has_no_weights_unembedding_or_ablation(fake_model_plugin: str) -> None:
    assert_refused(inspect("logits", "L0.N1", "--model", "fake"), "logits needs a model with an unembedding",
                   "FakeModel does not expose an unembedding", "pythia")
    assert_refused(inspect("weights", "L0.N1", "--model", "fake"), "weights needs an adapter that exposes its MLP "
                   "weights", "FakeModel does not expose weights")
    ablate = inspect("ablate", "L0.N1", "--model", "fake", "--dataset", "text_features", "--dataset-params",
                     "{max_sequences: 10, sequence_length: 32, min_positive_rate: 0.02}")
    assert_refused(ablate, "ablate measures the language-model loss", "FakeModel does not expose an unembedding")


@pytest.mark.slow
def test_minilm_has_no_language_model_head() -> None:
    assert_refused(inspect("logits", "L0.N1", "--model", "minilm"), "logits needs a model with an unembedding",
                   "without a language-model head", "pythia")
    ablate = inspect("ablate", "L0.N1", "--model", "minilm", "--dataset", "text_features", "--dataset-params",
                     "{max_sequences: 10, sequence_length: 32, min_positive_rate: 0.02}")
    assert_refused(ablate, "ablate measures the language-model loss", "without a language-model head")
    assert_refused(inspect("by-class", "L6.N0", "--model", "minilm"), "model 'minilm' has layers 0-5")
    assert_refused(inspect("by-class", "L0.N1536", "--model", "minilm"), "model 'minilm' has neurons 0-1535")


def test_unwritable_output_stops_before_the_analysis(fake_model_plugin: str, texts: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for output in (a_file, a_file / "sub"):
        result = inspect("max-activating", "L0.N1", "--model", "fake", "--text", str(texts), "-o", str(output))
        assert_refused(result, f"--output {output}", f"{a_file} is a file, not a directory")
        assert "max-activating tokens" not in result.stdout  # refused up front, not after the analysis


def test_read_only_output_directory(fake_model_plugin: str, texts: Path, tmp_path: Path,
                                   tiny_neox_dir: Path) -> None:
    """A directory this user cannot write: by permissions (an ordinary user), or on a read-only filesystem (root,
    whom permissions do not stop: a read-only tmpfs in a private mount namespace)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
        try:
            result = inspect("max-activating", "L0.N1", "--model", "fake", "--text", str(texts), "-o",
                             str(locked / "out"))
            assert_refused(result, f"--output {locked / 'out'}", "permission denied")
            assert not (locked / "out").exists()
        finally:
            locked.chmod(0o755)
        return
    model = json.dumps({"name": str(tiny_neox_dir)})
    command = (f"mount -t tmpfs -o ro,size=1m tmpfs {locked} && exec {sys.executable} -m probekit inspect "
               f"max-activating L0.N1 --model pythia --model-params '{model}' --text {texts} -o {locked / 'out'}")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == f"error: --output {locked / 'out'}: cannot write in {locked} (a read-only " \
        "file system); choose a writable location", result.stderr
    assert "max-activating tokens" not in result.stdout  # refused before the analysis


# ------------------------------------------------------------------------------------------------------------------
# what a successful command prints and saves


def test_max_activating_saves_numbers_and_figures(fake_model_plugin: str, texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "deeper"  # created
    result = inspect("max-activating", "L0.N1", "L1.N17", "--model", "fake", "--text", str(texts / "*.txt"),
                     "--top", "4", "--band-examples", "3", "--context", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    names = {"max-activating.parquet", "max-activating.json", "max-activating.png", "max-activating.svg"}
    assert {p.name for p in out.iterdir()} == names
    assert all((out / name).stat().st_size > 0 for name in names)
    assert (out / "max-activating.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (out / "max-activating.svg").read_bytes()

    rows = pq.read_table(out / "max-activating.parquet").to_pylist()
    assert [(r["neuron"], r["kind"]) for r in rows] == (
        [("L0.N1", "top")] * 4 + [("L0.N1", "band 0.9-0.99")] * 3 + [("L1.N17", "top")] * 4
        + [("L1.N17", "band 0.9-0.99")] * 3)
    top = [r["activation"] for r in rows if r["neuron"] == "L0.N1" and r["kind"] == "top"]
    assert top == sorted(top, reverse=True) and max(top) > 1.0  # the fake digit detector fires on '1984', '12'...
    terminal = table_rows(result.stdout, "max-activating tokens of L0.N1, L1.N17")
    assert len(terminal) == len(rows)
    header = list(rows[0])
    for row, cells in zip(rows, terminal):
        assert cells[: header.index("token_id") + 1] == [shown(row[c]) for c in header[: header.index("token_id") + 1]]
    assert all(len(cells) == len(header) for cells in terminal)  # contexts with line breaks stay on one line

    description = json.loads((out / "max-activating.json").read_text())
    assert description["analysis"] == "max-activating" and description["model"] == "fake"
    assert description["corpus"] == str(texts / "*.txt") and description["neurons"] == ["L0.N1", "L1.N17"]
    assert description["tables"] == {"examples": "max-activating.parquet"}
    assert description["sequences"] >= 3 and description["top"] == 4  # 128-token windows of 3 files


def test_vocab_on_text_files(fake_model_plugin: str, texts: Path, tmp_path: Path) -> None:
    out = tmp_path / "vocab-out"
    result = inspect("vocab", "L0.N1", "--model", "fake", "--text", str(texts), "--min-count", "3", "--top", "5",
                     "-o", str(out))
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"vocab.parquet", "vocab-tokens.parquet", "vocab.json", "vocab.png",
                                               "vocab.svg"}
    ranked = pq.read_table(out / "vocab.parquet").to_pylist()
    terminal = table_rows(result.stdout, "activation per token of L0.N1")
    assert [shown_row(row) for row in ranked[:len(terminal)]] == terminal
    assert ranked[0]["end"] == "top" and any(c.isdigit() for c in ranked[0]["token"])  # the digit neuron
    tokens = pq.read_table(out / "vocab-tokens.parquet").to_pylist()
    assert sum(r["count"] for r in tokens) == json.loads((out / "vocab.json").read_text())["tokens"]
    assert json.loads((out / "vocab.json").read_text())["corpus"] == str(texts)


def test_by_class_from_run_reuses_model_dataset_and_cache(fake_run: Path, tmp_path: Path) -> None:
    results = pq.read_table(fake_run / "results").to_pylist()
    best = max((r for r in results if r["feature"] == "contains_digit" and r["dataset"] == "prose" and r["k"] == 3
                and not r.get("control")), key=lambda r: r["f1"])
    neurons = best["neurons"]
    assert len(neurons) == 3 and all(n.startswith(f"L{best['layer']}.N") for n in neurons)
    out = tmp_path / "by-class"
    run = ["--from-run", str(fake_run), "--dataset", "prose", "--feature", "contains_digit"]
    # the ids as the results table writes them: separate arguments, comma-separated, or the list's repr
    for ids in ([",".join(neurons)], [str(neurons)], neurons):  # the last one saves its output
        result = inspect("by-class", *ids, *run, *(["-o", str(out)] if ids is neurons else []))
        assert result.exit_code == 0, result.output
        assert f"layers {best['layer']} read from the activation cache" in result.stdout
        assert f"{', '.join(neurons)} on 'contains_digit'" in result.stdout
        assert "sum of 3" in result.stdout
    description = json.loads((out / "by-class.json").read_text())
    assert description["neurons"] == neurons and description["model"] == "fake"
    assert description["corpus"] == "prose" and description["feature"] == "contains_digit"
    assert description["layers_from_cache"] == [best["layer"]]
    assert description["notes"] == [f"layers {best['layer']} read from the activation cache"]
    assert {p.name for p in out.iterdir()} == {"by-class.parquet", "by-class-thresholds.parquet",
                                               "by-class-histogram.parquet", "by-class.json", "by-class.png",
                                               "by-class.svg"}
    classes = pq.read_table(out / "by-class.parquet").to_pylist()
    assert [(r["series"], r["class"]) for r in classes] == [
        (name, cls) for name in [*neurons, "sum of 3"] for cls in ("positive", "negative")]
    counts = json.loads((fake_run / "run.json").read_text())["datasets"]["fake / prose"]["features"]["contains_digit"]
    assert classes[0]["n"] == counts["positive"] and classes[1]["n"] == counts["negative"]
    assert table_rows(result.stdout, f"{', '.join(neurons)} on 'contains_digit'") == [
        [shown(v) for v in row.values()] for row in classes]
    thresholds = pq.read_table(out / "by-class-thresholds.parquet").to_pylist()
    assert [r["series"] for r in thresholds] == [*neurons, "sum of 3"]
    assert table_rows(result.stdout, "best single threshold") == [[shown(v) for v in r.values()] for r in thresholds]

    # the same numbers without the cache (extracted again): the cache holds what the model computes
    fresh = inspect("by-class", *neurons, *run, "--cache", str(tmp_path / "empty-cache"))
    assert fresh.exit_code == 0, fresh.output
    assert "activation cache" not in fresh.stdout
    assert table_rows(fresh.stdout, f"{', '.join(neurons)} on 'contains_digit'") == table_rows(
        result.stdout, f"{', '.join(neurons)} on 'contains_digit'")


def test_from_run_text_corpus_for_max_activating_and_vocab(fake_run: Path, texts: Path) -> None:
    run = ["--from-run", str(fake_run)]
    result = inspect("max-activating", "L0.N1", *run, "--text", str(texts), "--top", "2", "--band-examples", "0")
    assert result.exit_code == 0, result.output  # --text needs no --dataset, though the run has two
    rows = table_rows(result.stdout, "max-activating tokens of L0.N1")
    assert len(rows) == 2 and all(row[1] == "top" for row in rows)
    vocab = inspect("vocab", "L0.N1", *run, "--text", str(texts), "--top", "2")
    assert vocab.exit_code == 0, vocab.output
    assert len(table_rows(vocab.stdout, "activation per token of L0.N1")) == 4
    on_dataset = inspect("vocab", "L0.N1", *run, "--dataset", "prose", "--top", "2", "--split-by", "contains_digit")
    assert on_dataset.exit_code == 0, on_dataset.output
    # token-level labels: no token is both inside and outside the feature's spans; said, not an empty table
    assert "no token occurs --min-count 5 times both in positive and in negative spans" in on_dataset.stdout


@pytest.mark.slow
def test_logits_ablate_and_weights_on_a_language_model(tiny_neox_dir: Path, tmp_path: Path) -> None:
    model = ["--model", "pythia", "--model-params", json.dumps({"name": str(tiny_neox_dir)})]
    out = tmp_path / "out"
    logits = inspect("logits", "L1.N5", "L2.N0", *model, "--top", "3", "-o", str(out))
    assert logits.exit_code == 0, logits.output
    ranked = pq.read_table(out / "logits.parquet").to_pylist()
    assert len(ranked) == 2 * 2 * 3
    assert table_rows(logits.stdout, "direct logit effect of L1.N5, L2.N0")[0] == shown_row(ranked[0])
    assert "final norm folded in: scale and mean subtraction (LayerNorm)" in logits.stdout
    assert pq.read_table(out / "logits-effects.parquet").num_rows == 2 * json.loads(
        (out / "logits.json").read_text())["vocab"]

    weights = inspect("weights", "L1.N5", *model, "-o", str(out))
    assert weights.exit_code == 0, weights.output
    inspected = pq.read_table(out / "weights.parquet").to_pylist()
    assert [r["neuron"] for r in inspected] == ["L1.N5"] and 0 < inspected[0]["input_norm_percentile"] <= 100
    assert pq.read_table(out / "weights-neurons.parquet").num_rows == 256  # layer 1's neurons only
    assert json.loads((out / "weights.json").read_text())["layers"] == [1]
    assert_refused(inspect("weights", *model, "--layers", "3"), "beyond the last layer of 'pythia' (2)")

    ablate = inspect("ablate", "L0.N1", *model, "--dataset", "text_features", "--dataset-params",
                     "{max_sequences: 12, sequence_length: 32, min_positive_rate: 0.02, features: [contains_digit]}",
                     "--feature", "contains_digit", "--mode", "mean", "--bootstrap", "50", "-o", str(out))
    assert ablate.exit_code == 0, ablate.output
    classes = pq.read_table(out / "ablate.parquet").to_pylist()
    assert {r["class"] for r in classes} <= {"contains_digit", "not contains_digit"} and classes
    assert json.loads((out / "ablate.json").read_text())["mode"] == "mean"
    assert (out / "ablate.svg").stat().st_size > 0


def test_any_text_source_is_a_corpus(fake_model_plugin: str, texts: Path, tmp_path: Path) -> None:
    """--text also takes a datasets' text source as YAML: the same files through {kind: files} count the same."""
    by_glob = inspect("vocab", "L0.N1", "--model", "fake", "--text", str(texts / "*.txt"), "-o", str(tmp_path / "a"))
    source = json.dumps({"kind": "files", "path": str(texts)})
    by_source = inspect("vocab", "L0.N1", "--model", "fake", "--text", source, "-o", str(tmp_path / "b"))
    assert by_glob.exit_code == by_source.exit_code == 0, by_source.output
    assert (pq.read_table(tmp_path / "a" / "vocab-tokens.parquet").to_pylist()
            == pq.read_table(tmp_path / "b" / "vocab-tokens.parquet").to_pylist())
    stdlib = inspect("max-activating", "L0.N1", "--model", "fake", "--text", "{kind: stdlib}", "--max-sequences", "5",
                     "--top", "2", "--band-examples", "0")
    assert stdlib.exit_code == 0 and "top" in stdlib.stdout, stdlib.output
    assert_refused(inspect("vocab", "L0.N1", "--model", "fake", "--text", "{kind: nope}"),
                   "--text {kind: nope}: not a text source (Input tag 'nope'", "'stdlib', 'files'")
