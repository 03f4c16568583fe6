"""The plugin registry: entry-point discovery, lazy loading, broken / duplicate / unknown plugins."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

import probekit.registry as registry_module
from probekit.api import API_VERSION
from probekit.cli import app
from probekit.contracts import Selector
from probekit.errors import PluginError
from probekit.registry import GROUPS, PluginRegistry

GOOD_SELECTOR = """
    from probekit.contracts import PluginParams, Selection, Selector

    class FirstColumns(Selector):
        '''Takes the first k columns.'''

        def select(self, X_train, y_train, ks):
            return {k: Selection(list(range(k))) for k in ks}
"""


def test_builtins_are_found_through_entry_points() -> None:
    registry = PluginRegistry()
    assert {"minilm", "huggingface"} <= set(registry.names("models"))
    assert "text_features" in registry.names("datasets")
    assert "mean_diff" in registry.names("selectors")
    assert all(entry.package == "probekit" for entry in registry.entries("selectors") if entry.name == "mean_diff")


def test_third_party_selector_is_loaded_lazily_and_checked(install_fake_distribution) -> None:
    module = install_fake_distribution("acme-probes", GOOD_SELECTOR, {"probekit.selectors": {"first": "FirstColumns"}})
    import sys

    registry = PluginRegistry()
    assert "first" in registry.names("selectors")
    assert module not in sys.modules  # discovery does not import plugins
    cls = registry.get("selectors", "first")
    assert issubclass(cls, Selector)
    assert [e.package for e in registry.entries("selectors") if e.name == "first"] == ["acme-probes"]


def test_broken_plugin_is_reported_without_breaking_the_rest(install_fake_distribution) -> None:
    install_fake_distribution("broken-pkg", "import not_a_real_module_xyz\n", {"probekit.selectors": {"bad": "X"}})
    registry = PluginRegistry()
    with pytest.raises(PluginError, match=r"'bad' from package 'broken-pkg' failed to import.*not_a_real_module_xyz"):
        registry.get("selectors", "bad")
    usable, broken = registry.survey("selectors")
    assert "mean_diff" in [entry.name for entry, _ in usable]
    assert [b.entry.name for b in broken] == ["bad"]
    assert "ModuleNotFoundError" in broken[0].error


def test_duplicate_names_are_refused_naming_both_packages(install_fake_distribution) -> None:
    install_fake_distribution("pkg-one", GOOD_SELECTOR, {"probekit.selectors": {"twin": "FirstColumns"}})
    install_fake_distribution("pkg-two", GOOD_SELECTOR, {"probekit.selectors": {"twin": "FirstColumns"}})
    with pytest.raises(PluginError, match="registered twice") as error:
        PluginRegistry().get("selectors", "twin")
    assert "pkg-one" in str(error.value) and "pkg-two" in str(error.value)


def test_unknown_name_lists_known_ones_with_did_you_mean() -> None:
    with pytest.raises(PluginError) as error:
        PluginRegistry().get("selectors", "mean_dif")
    message = str(error.value)
    assert "unknown selectors 'mean_dif'" in message
    assert "Did you mean 'mean_diff'?" in message
    assert "Known: " in message and "mean_diff" in message


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("class NotAPlugin:\n    '''Nope.'''\n", "is not a subclass of probekit.contracts.Selector"),
        (
            "from pydantic import BaseModel\nfrom probekit.contracts import Selector, Selection\n"
            "class Loose(Selector):\n    '''Loose params.'''\n    class Params(BaseModel):\n        pass\n"
            "    def select(self, X, y, ks):\n        return {}\n",
            "accepts unknown keys",
        ),
        (
            "from probekit.contracts import Selector\nclass NoDoc(Selector):\n"
            "    def select(self, X, y, ks):\n        return {}\n",
            "has no docstring",
        ),
        (
            "from probekit.contracts import Selector\nclass Abstract(Selector):\n    '''Forgot select.'''\n",
            "does not implement select",
        ),
    ],
)
def test_contract_violations_are_explained(install_fake_distribution, code: str, problem: str) -> None:
    install_fake_distribution("sloppy", code, {"probekit.selectors": {"sloppy": code.split("class ")[1].split("(")[0]
                                                                        .split(":")[0]}})
    with pytest.raises(PluginError, match=problem):
        PluginRegistry().get("selectors", "sloppy")


WRONG_SIGNATURE = """
    from probekit.contracts import Selection, Selector

    class TwoArguments(Selector):
        '''Forgets ks.'''

        def select(self, X, y):
            return {}
"""

SPEC_WITH_SELECTOR = """\
models:
  - plugin: minilm
datasets:
  - plugin: text_features
layers: [0]
selectors:
  - plugin: {selector}
ks: [1]
"""


def test_a_wrong_method_signature_is_a_broken_plugin_listed_and_refused(install_fake_distribution, tmp_path) -> None:
    install_fake_distribution("sloppy-probes", WRONG_SIGNATURE, {"probekit.selectors": {"two": "TwoArguments"}})
    message = ("selectors plugin 'two' from package 'sloppy-probes' has select(self, X, y) but the contract calls "
               "select(self, X_train, y_train, ks)")
    listing = json.loads(CliRunner().invoke(app, ["list-plugins", "--json"]).stdout)
    [broken] = [plugin for plugin in listing["selectors"] if plugin["name"] == "two"]
    assert broken["error"] == message
    assert "mean_diff" in {plugin["name"] for plugin in listing["selectors"] if plugin["error"] is None}

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_WITH_SELECTOR.format(selector="two"))
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and f"line 7: selectors[0].plugin: {message}" in result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize(
    ("method", "accepted"),
    [
        ("def select(self, X, y, ks):", True),  # names may differ: the core passes them positionally
        ("def select(self, *args):", True),
        ("def select(self, X, y, ks, seed=0, *, verbose=False):", True),  # extras with defaults are fine
        ("@staticmethod\n        def select(X, y, ks):", True),
        ("def select(self, X, y, ks, seed):", False),  # a required extra argument the core never passes
        ("def select(self, X, y, ks, *, seed):", False),
        ("def select(X, y, ks):", False),  # no self: the instance takes X's place
    ],
)
def test_select_signatures(install_fake_distribution, method: str, accepted: bool) -> None:
    code = f"""
    from probekit.contracts import Selector

    class Picky(Selector):
        '''Picks.'''

        {method}
            return {{}}
    """
    install_fake_distribution("picky", code, {"probekit.selectors": {"picky": "Picky"}})
    if accepted:
        PluginRegistry().get("selectors", "picky")
    else:
        with pytest.raises(PluginError, match=r"has select\(.*\) but the contract calls select\(self, X_train, "):
            PluginRegistry().get("selectors", "picky")


def test_other_called_methods_are_checked_too(install_fake_distribution) -> None:
    code = """
    from probekit.contracts import DatasetPlugin, Selector

    class NoTokenizer(DatasetPlugin):
        '''Builds from nothing.'''

        def build(self):
            return None

    class OneArgument(Selector):
        '''Ignores the candidate count.'''

        def select(self, X, y, ks):
            return {}

        def ks_problem(self, ks):
            return None
    """
    install_fake_distribution("more-sloppy", code, {"probekit.datasets": {"bare": "NoTokenizer"},
                                                     "probekit.selectors": {"one": "OneArgument"}})
    with pytest.raises(PluginError, match=r"has build\(self\) but the contract calls build\(self, tokenizer\)"):
        PluginRegistry().get("datasets", "bare")
    with pytest.raises(PluginError, match=r"has ks_problem\(self, ks\) but the contract calls "
                                          r"ks_problem\(self, ks, n_columns\)"):
        PluginRegistry().get("selectors", "one")


def test_every_built_in_plugin_passes_the_signature_checks() -> None:
    registry = PluginRegistry()
    for group in GROUPS:
        _, broken = registry.survey(group)
        assert not [b.error for b in broken if "but the contract calls" in b.error or "api_version" in b.error]


def versioned_selector(version: object) -> str:
    return f"""
    from probekit.contracts import Selection, Selector

    class Versioned(Selector):
        '''Declares the plugin API it was written for.'''

        api_version = {version!r}

        def select(self, X_train, y_train, ks):
            return {{k: Selection(list(range(k))) for k in ks}}
    """


def test_a_plugin_for_a_newer_api_is_broken_and_says_to_upgrade_probekit(install_fake_distribution, tmp_path) -> None:
    install_fake_distribution("future-probes", versioned_selector(99), {"probekit.selectors": {"future": "Versioned"}})
    listing = json.loads(CliRunner().invoke(app, ["list-plugins", "--json"]).stdout)
    [broken] = [plugin for plugin in listing["selectors"] if plugin["name"] == "future"]
    assert broken["error"] == (f"selectors plugin 'future' from package 'future-probes' is written for plugin API "
                               f"version 99, but this probekit offers version {API_VERSION}; upgrade probekit (pip "
                               "install --upgrade probekit) to use it")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_WITH_SELECTOR.format(selector="future"))
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "upgrade probekit" in result.stderr


@pytest.mark.parametrize(("version", "problem"), [(0, "no longer supports"), ("1", "must be an integer")])
def test_an_unsupported_or_malformed_api_version_is_broken(install_fake_distribution, version: object,
                                                          problem: str) -> None:
    install_fake_distribution("odd-probes", versioned_selector(version), {"probekit.selectors": {"odd": "Versioned"}})
    with pytest.raises(PluginError, match=problem):
        PluginRegistry().get("selectors", "odd")


def test_the_current_api_version_is_supported() -> None:
    assert API_VERSION in registry_module.SUPPORTED_API_VERSIONS


def test_the_current_api_version_loads_without_a_word(install_fake_distribution, caplog) -> None:
    install_fake_distribution("now-probes", versioned_selector(API_VERSION),
                              {"probekit.selectors": {"now": "Versioned"}})
    with caplog.at_level(logging.WARNING, logger="probekit"):
        assert PluginRegistry().get("selectors", "now").api_version == API_VERSION
    assert caplog.records == []


def test_a_deprecated_api_version_warns_and_loads(install_fake_distribution, monkeypatch, caplog) -> None:
    monkeypatch.setattr(registry_module, "DEPRECATED_API_VERSIONS", {0: "rename 'select' arguments; see docs"})
    install_fake_distribution("old-probes", versioned_selector(0), {"probekit.selectors": {"old": "Versioned"}})
    with caplog.at_level(logging.WARNING, logger="probekit"):
        cls = PluginRegistry().get("selectors", "old")
    assert cls.api_version == 0
    assert [record.getMessage() for record in caplog.records] == [
        "selectors plugin 'old' from package 'old-probes' declares api_version 0, which is deprecated: rename "
        "'select' arguments; see docs"]
    assert [record.name for record in caplog.records] == ["probekit.registry"]

    result = CliRunner().invoke(app, ["list-plugins", "--json"])  # the CLI prints it as a warning line
    [old] = [plugin for plugin in json.loads(result.stdout)["selectors"] if plugin["name"] == "old"]
    assert result.exit_code == 0 and old["error"] is None
    assert "warning: selectors plugin 'old' from package 'old-probes' declares api_version 0, which is deprecated" \
        in result.stderr
