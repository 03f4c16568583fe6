"""Text sources: files, globs, JSONL (with line-numbered errors) and Python's standard library."""

from __future__ import annotations

from pathlib import Path

import pytest

from probekit.api import FilesSource, JsonlSource, StdlibSource, read_documents
from probekit.datasets.sources import docstrings_and_comments
from probekit.errors import RunError


def test_jsonl_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": broken}\n')
    documents = read_documents(JsonlSource(kind="jsonl", path=str(path)), seed=0)
    assert next(documents) == "fine"
    with pytest.raises(RunError, match=rf"{path}:3: not valid JSON"):
        next(documents)
    path.write_text('{"body": "no text field"}\n')
    with pytest.raises(RunError, match=rf"{path}:1: no string field 'text'"):
        list(read_documents(JsonlSource(kind="jsonl", path=str(path)), seed=0))


def test_files_from_directory_glob_and_single_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first document")
    (tmp_path / "a" / "two.md").write_text("second document")
    (tmp_path / "a" / "empty.txt").write_text("   \n")
    assert sorted(read_documents(FilesSource(kind="files", path=str(tmp_path / "a")), 0)) == [
        "first document", "second document"]
    assert list(read_documents(FilesSource(kind="files", path=str(tmp_path / "a" / "*.txt")), 0)) == [
        "first document"]
    assert list(read_documents(FilesSource(kind="files", path=str(tmp_path / "a" / "two.md")), 0)) == [
        "second document"]
    with pytest.raises(RunError, match="no such file, directory or matching files"):
        list(read_documents(FilesSource(kind="files", path=str(tmp_path / "missing" / "*.txt")), 0))
    (tmp_path / "a" / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RunError, match="bin.txt: not UTF-8 text"):
        list(read_documents(FilesSource(kind="files", path=str(tmp_path / "a" / "bin.txt")), 0))


def test_docstrings_and_comments_are_extracted() -> None:
    source = (b'"""Module doc."""\n# first comment\n# continues here\nx = 1  # trailing\n\n'
              b'def f():\n    """Func doc."""\n')
    text = docstrings_and_comments(source)
    assert text.split("\n\n") == ["Module doc.", "Func doc.", "first comment continues here", "trailing"]
    assert docstrings_and_comments(b"def broken(:\n") == ""


def test_stdlib_source_is_shuffled_by_seed() -> None:
    first = read_documents(StdlibSource(), seed=0)
    again = read_documents(StdlibSource(), seed=0)
    other = read_documents(StdlibSource(), seed=1)
    a, b, c = next(first), next(again), next(other)
    assert a == b and a != c and len(a) > 20


def test_hub_text_source(monkeypatch) -> None:
    import sys
    import types

    from probekit.api import HubSource

    source = HubSource(kind="hub", dataset="someone/pile", field="content")  # 'field': the older name
    assert source.text_field == "content"
    monkeypatch.setattr("probekit.datasets.sources.hub_problem", lambda *args: None)  # the hub answers
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(
        load_dataset=lambda *a, **k: [{"content": "first"}, {"content": "  "}, {"content": "second"}]))
    assert list(read_documents(source, seed=0)) == ["first", "second"]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: [{"x": 1}]))
    with pytest.raises(RunError, match="someone/pile row 1: no string field 'content'"):
        list(read_documents(source, seed=0))
