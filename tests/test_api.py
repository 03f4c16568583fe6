"""``probekit.api`` is the plugin authors' one module: every name it promises exists, the built-in plugins import
nothing else of probekit (as a third party would), and its generated reference is current."""

from __future__ import annotations

import ast
from pathlib import Path

from probekit import api
from probekit.api_reference import reference

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_exists_and_is_listed_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    assert [name for name in api.__all__ if not hasattr(api, name)] == []


def test_built_in_plugins_import_only_the_public_api() -> None:
    """plugins/ may import probekit.api and its own modules (probekit_plugins), nothing else of probekit."""
    offenders = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {module}" for module in modules
                          if module.split(".")[0] == "probekit" and module != "probekit.api"]
    assert offenders == []


def test_the_reference_in_the_docs_is_current() -> None:
    """Regenerate with: python -m probekit.api_reference > docs/api-reference.md"""
    assert (ROOT / "docs" / "api-reference.md").read_text() == reference()
