"""Labelled document sources: tables (JSONL / CSV / Parquet), GNOME help pages, mixtures, and the hub."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probekit.api import GnomeHelpSource, HubSource, MixtureSource, SystemFilesSource, TableSource, documents_by_label
from probekit.datasets.sources import mallard_paragraphs
from probekit.errors import RunError

ROWS = [{"text": f"document {i}", "label": "even" if i % 2 == 0 else "odd"} for i in range(10)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_tables_of_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"docs{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS))
    elif suffix == ".csv":
        path.write_text("text,label\n" + "\n".join(f"{r['text']},{r['label']}" for r in ROWS))
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    grouped = documents_by_label(TableSource(kind="table", path=str(path)), per_label=3, seed=0)
    assert list(grouped) == ["even", "odd"] and all(len(docs) == 3 for docs in grouped.values())
    assert all(d.text.startswith("document") and int(d.text.split()[1]) % 2 == (d.label == "odd")
               for docs in grouped.values() for d in docs)
    again = documents_by_label(TableSource(kind="table", path=str(path)), per_label=3, seed=0)
    assert grouped == again


def test_table_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nfine,a\nno label,\n")
    with pytest.raises(RunError, match=rf"{path}:3: no value in field 'label'"):
        documents_by_label(TableSource(kind="table", path=str(path)), 5, 0)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": 5, "label": "x"}\n')
    with pytest.raises(RunError, match=rf"{path}:2: no string field 'text'"):
        documents_by_label(TableSource(kind="table", path=str(path)), 5, 0)
    text_file = tmp_path / "docs.txt"
    text_file.write_text("x")
    with pytest.raises(RunError, match="use a .jsonl, .csv or .parquet file"):
        documents_by_label(TableSource(kind="table", path=str(text_file)), 5, 0)


PAGE = """<page xmlns="http://projectmallard.org/1.0/" id="{id}">
  <title>T</title>
  <p>{first}</p>
  <p>Shared   untranslated
     paragraph.</p>
</page>"""


def test_gnome_help_drops_paragraphs_left_in_english(tmp_path: Path) -> None:
    for folder, first in (("C", "Open the settings."), ("fr", "Ouvrez les paramètres.")):
        (tmp_path / folder / "gnome-help").mkdir(parents=True)
        (tmp_path / folder / "gnome-help" / "a.page").write_text(PAGE.format(id="a", first=first))
    assert mallard_paragraphs(tmp_path / "C" / "gnome-help" / "a.page") == [
        "Open the settings.", "Shared untranslated paragraph."]
    grouped = documents_by_label(GnomeHelpSource(kind="gnome_help", languages=["en", "fr"], root=str(tmp_path)), 5, 0)
    assert [d.text for d in grouped["fr"]] == ["Ouvrez les paramètres."]
    assert [d.text for d in grouped["en"]] == ["Open the settings.\nShared untranslated paragraph."]
    with pytest.raises(RunError, match="no GNOME help pages for language 'de'.*available: C, fr"):
        documents_by_label(GnomeHelpSource(kind="gnome_help", languages=["de"], root=str(tmp_path)), 5, 0)
    with pytest.raises(RunError, match="apt-get install gnome-user-docs"):
        documents_by_label(GnomeHelpSource(kind="gnome_help", root=str(tmp_path / "none")), 5, 0)


def test_mixture_labels_each_part_and_names_missing_packages(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha text")
    (tmp_path / "b.txt").write_text("beta text")
    source = MixtureSource.model_validate({"kind": "mixture", "parts": {
        "first": {"kind": "files", "path": str(tmp_path / "a.txt")},
        "second": {"kind": "files", "path": str(tmp_path / "b.txt")}}})
    grouped = documents_by_label(source, 5, 0)
    assert {label: [d.text for d in docs] for label, docs in grouped.items()} == {
        "first": ["alpha text"], "second": ["beta text"]}
    missing = MixtureSource(kind="mixture", parts={"go": SystemFilesSource(
        kind="system", glob=str(tmp_path / "nowhere" / "**" / "*.go"), package="golang-1.19-src")})
    with pytest.raises(RunError, match="install them with: apt-get install golang-1.19-src"):
        documents_by_label(missing, 5, 0)


def test_hub_source_explains_what_to_do_offline(monkeypatch) -> None:
    source = HubSource(kind="hub", dataset="someone/europarl")
    monkeypatch.setattr("probekit.datasets.sources.hub_problem", lambda *args: None)  # the hub answers
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(RunError, match=r"pip install 'probekit\[hub\]'"):
        documents_by_label(source, 5, 0)

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(RunError, match="(?s)cannot load hub dataset 'someone/europarl'.*kind: table"):
        documents_by_label(source, 5, 0)
    rows = [{"text": "hallo", "label": "de"}, {"text": "hello", "label": "en"}]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: rows))
    grouped = documents_by_label(source, 5, 0)
    assert {label: [d.text for d in docs] for label, docs in grouped.items()} == {"de": ["hallo"], "en": ["hello"]}
