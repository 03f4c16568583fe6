"""The example third-party package (examples/third_party_plugin) installs on its own and plugs into probekit.

The package is really installed with pip into an isolated target directory (not the project's environment); the CLI
then runs in a subprocess with that directory on PYTHONPATH, so ``importlib.metadata`` discovers the new distribution
and its entry points exactly as it would for any third-party plugin.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
PACKAGE_SOURCE = REPO / "examples" / "third_party_plugin"
DISTRIBUTION = "probekit-example-plugin"
IMPORT_PACKAGE = "probekit_example_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only the example package, installed by pip (built from a copy of its source)."""
    root = tmp_path_factory.mktemp("third_party")
    # build from a copy, so setuptools' build/ and *.egg-info never land in the repository
    source = root / "source"
    shutil.copytree(PACKAGE_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, f"pip install failed:\n{completed.stdout}\n{completed.stderr}"
    assert (target / IMPORT_PACKAGE / "welch.py").is_file()
    assert list(target.glob("probekit_example_plugin-*.dist-info/entry_points.txt"))
    return target


def probekit_command() -> list[str]:
    """The probekit CLI: the console script next to this interpreter (``python -m probekit.cli`` has no main)."""
    script = Path(sys.executable).with_name("probekit")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from probekit.cli import app; app(prog_name='probekit')"]


def run_cli(site: Path, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return subprocess.run([*probekit_command(), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


@pytest.fixture
def plugin(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The installed package, imported from the target directory (not from the repository's source tree)."""
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == IMPORT_PACKAGE or m.startswith(IMPORT_PACKAGE + ".")]:
        del sys.modules[name]
    module = importlib.import_module(IMPORT_PACKAGE)
    assert Path(module.__file__).resolve().is_relative_to(site.resolve())
    yield module
    for name in [m for m in sys.modules if m == IMPORT_PACKAGE or m.startswith(IMPORT_PACKAGE + ".")]:
        del sys.modules[name]


# ----------------------------------------------------------------------------------------------------------------
# discovery


def test_list_plugins_shows_the_third_party_plugins(site: Path, tmp_path: Path) -> None:
    completed = run_cli(site, "list-plugins", "--json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    listing = json.loads(completed.stdout)

    def entry(group: str, name: str) -> dict:
        matches = [p for p in listing[group] if p["name"] == name]
        assert len(matches) == 1, f"{name} in {group}: {matches}"
        return matches[0]

    welch = entry("selectors", "welch_t")
    keywords = entry("datasets", "keyword_tokens")
    assert entry("datasets", "regex_tokens")["error"] is None
    for plugin in (welch, keywords):
        assert plugin["error"] is None
        assert plugin["package"] == DISTRIBUTION
        assert plugin["summary"]
    assert welch["target"] == "probekit_example_plugin.welch:WelchT"
    assert keywords["target"] == "probekit_example_plugin.keywords:KeywordTokens"
    assert {"texts", "path", "keywords", "max_examples"} <= {p["name"] for p in keywords["parameters"]}
    # the built-ins are still there, and nothing is broken
    assert entry("selectors", "mean_diff")["error"] is None
    assert all(p["error"] is None for group in listing.values() for p in group)


# ----------------------------------------------------------------------------------------------------------------
# the package's own tests use probekit's conformance kit


def test_the_package_s_own_conformance_tests_pass(site: Path, tmp_path: Path) -> None:
    """Its tests/test_conformance.py calls probekit.testing's check_selector and check_dataset, run by pytest in a
    subprocess against the installed package, as the package's author would run them."""
    tests = site.parent / "source" / "tests" / "test_conformance.py"  # the copy the package was built from
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # one interpreter: run pytest on the package's tests, then say where the plugin and the kit it used came from
    # (imported only after pytest has loaded its own plugins, as in any pytest run)
    script = ("import sys, pytest\n"
              "code = pytest.main(sys.argv[1:])\n"
              "import probekit.testing, probekit_example_plugin as plugin\n"
              "print('plugin from', plugin.__file__, 'kit from', probekit.testing.__file__)\n"
              "sys.exit(code)")
    completed = subprocess.run(
        [sys.executable, "-c", script, "-q", "-p", "no:cacheprovider", "--rootdir", str(tests.parent), str(tests)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"
    assert "4 passed" in completed.stdout
    plugin_file, kit_file = completed.stdout.splitlines()[-1].removeprefix("plugin from ").split(" kit from ")
    assert Path(plugin_file).resolve().is_relative_to(site.resolve())  # the installed copy, not the source tree
    assert Path(kit_file).resolve().is_relative_to(REPO / "probekit")


# ----------------------------------------------------------------------------------------------------------------
# the welch_t selector


def scipy_abs_t(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(stats.ttest_ind(X[y], X[~y], equal_var=False).statistic)


def test_welch_t_selects_the_largest_abs_t(plugin: ModuleType) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 40)).astype(np.float32)
    y = rng.random(120) < 0.4
    X[y, 23] -= 1.5  # planted signal, negative direction: ranking must use |t|
    X[y, 7] += 0.8  # a weaker one
    X[:, 11] *= 50.0  # large scale, no signal: mean difference would like it, t should not
    expected = np.argsort(-scipy_abs_t(X, y), kind="stable")
    assert expected[0] == 23

    selections = plugin.WelchT().select(X, y, [1, 2, 5])
    assert sorted(selections) == [1, 2, 5]
    assert selections[1].neurons.tolist() == [23]
    for k, selection in selections.items():
        assert selection.neurons.tolist() == expected[:k].tolist()
        np.testing.assert_allclose(selection.scores, scipy_abs_t(X, y)[expected[:k]], rtol=1e-5)


def test_welch_t_scores_zero_variance_as_zero(plugin: ModuleType) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 6))
    y = np.arange(30) % 3 == 0
    X[:, 2] = 4.0  # constant
    X[:, 4] = np.where(y, 1.0, 0.0)  # constant within each class
    scores = plugin.welch_t_scores(X, y)
    assert np.all(np.isfinite(scores))
    assert scores[2] == 0 and scores[4] == 0
    others = [0, 1, 3, 5]
    np.testing.assert_allclose(scores[others], scipy_abs_t(X[:, others], y))
    selection = plugin.WelchT().select(X, y, [6])[6]
    assert sorted(selection.neurons.tolist()) == list(range(6))


# ----------------------------------------------------------------------------------------------------------------
# the keyword_tokens dataset


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from probekit_plugins.models.huggingface import minilm_directory

    return AutoTokenizer.from_pretrained(str(minilm_directory()))


def test_keyword_tokens_labels_whole_keyword_tokens(plugin: ModuleType, tokenizer) -> None:
    dataset = plugin.KeywordTokens().build(tokenizer)
    (feature,) = dataset.features
    assert feature.name == "is_keyword"
    assert dataset.sites.aggregation == "token"
    assert np.all(dataset.sites.end == dataset.sites.start + 1)
    positives = int(feature.labels.sum())
    assert positives >= 5 and len(feature.labels) - positives >= 5
    assert len(np.unique(feature.sites)) == len(feature.sites)

    special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    keywords = {w.lower() for w in plugin.keywords.DEFAULT_KEYWORDS}  # MiniLM is uncased
    for site, label in zip(feature.sites, feature.labels):
        token_id = int(dataset.sequences[dataset.sites.sequence[site]][dataset.sites.start[site]])
        assert token_id not in special
        token = tokenizer.convert_ids_to_tokens(token_id)
        if label:
            assert token in keywords


def test_keyword_matching_is_whole_word_and_exact(plugin: ModuleType) -> None:
    is_keyword = plugin.keywords.is_keyword
    words = {"def", "if", "None"}
    text = "def definition(x_if): if x is None: pass"
    assert is_keyword(text, 0, 3, words)  # 'def'
    assert not is_keyword(text, 4, 7, words)  # 'def' of 'definition' (a word piece)
    assert not is_keyword(text, 17, 19, words)  # 'if' of 'x_if'
    assert is_keyword(text, 22, 24, words)  # 'if'
    assert is_keyword(text, 29, 34, words)  # ' None' (a byte-level BPE span with its leading space)
    assert not is_keyword("none", 0, 4, words)  # exact, case-sensitive


def test_keyword_tokens_reads_jsonl_and_samples(plugin: ModuleType, tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "texts.jsonl"
    lines = [{"text": f"def f{i}(x): return x if x else None"} for i in range(10)] + [{"text": "while True: pass"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    params = plugin.KeywordTokens.Params(path=path, keywords=["def", "return", "while"], max_examples=20, seed=3)
    dataset = plugin.KeywordTokens(params).build(tokenizer)
    (feature,) = dataset.features
    assert len(dataset.sequences) == 11
    assert len(feature.labels) == 20 and feature.labels.sum() == 10

    with pytest.raises(ValueError, match="not both"):
        plugin.KeywordTokens.Params(path=path, texts=["x"])
    from probekit.errors import RunError

    with pytest.raises(RunError, match="at least 5"):
        plugin.KeywordTokens(plugin.KeywordTokens.Params(texts=["def f(): pass"])).build(tokenizer)


# ----------------------------------------------------------------------------------------------------------------
# the regex_tokens dataset: written only against probekit.api


def test_regex_tokens_is_a_short_dataset_on_the_public_api(plugin: ModuleType) -> None:
    source = Path(plugin.regex_tokens.__file__).read_text()
    assert len(source.splitlines()) < 60
    imported = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert {name for name in imported if name.startswith("probekit")} == {"probekit.api"}


def test_regex_tokens_labels_tokens_by_their_text(plugin: ModuleType, tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [f"call load_data with 12 rows and {i} retries, then save_all" for i in range(40)]
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    params = plugin.RegexTokens.Params(source={"kind": "jsonl", "path": str(path)}, max_examples=60,
                                       patterns={"is_number": r"\d+", "is_with": "with"})
    dataset = plugin.RegexTokens(params).build(tokenizer)
    assert [f.name for f in dataset.features] == ["is_number", "is_with"]
    for feature, pattern in zip(dataset.features, (r"\d+", "with")):
        tokens = [tokenizer.convert_ids_to_tokens(int(dataset.sequences[dataset.sites.sequence[site]]
                                                      [dataset.sites.start[site]])) for site in feature.sites]
        assert [re.fullmatch(pattern, token) is not None for token in tokens] == feature.labels.tolist()
        assert 0 < feature.labels.sum() < len(feature.labels)
    np.testing.assert_array_equal(dataset.groups, dataset.sites.sequence)  # one document per window: its group


# ----------------------------------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow
def test_run_with_third_party_plugins(site: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    spec = {
        "name": "third_party_test",
        "models": [{"plugin": "minilm"}],
        "datasets": [{"plugin": "keyword_tokens", "params": {"max_examples": 100, "max_length": 32}}],
        "layers": [0],
        "selectors": [{"plugin": "welch_t"}, {"plugin": "mean_diff"}],
        "ks": [1, 2],
        "output": str(run_dir),
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")

    completed = run_cli(site, "run", str(spec_path), cwd=tmp_path, timeout=600)
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"

    table = pq.read_table(run_dir / "results").to_pylist()
    welch = [row for row in table if row["selector"] == "welch_t"]
    assert {row["feature"] for row in welch} == {"is_keyword"}
    assert {row["k"] for row in welch} == {1, 2}
    assert {row["layer"] for row in welch} == {0}
    by_k = {row["k"]: row for row in welch}
    assert len(set(by_k[2]["neuron_indices"])) == 2
    assert by_k[1]["neuron_indices"][0] == by_k[2]["neuron_indices"][0]  # one ranking, nested selections
    assert {row["k"] for row in table if row["selector"] == "mean_diff"} == {1, 2}
    assert len(table) == 4
