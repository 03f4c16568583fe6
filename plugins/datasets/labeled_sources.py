"""Where labelled documents come from: a local table, GNOME help pages per language, a mixture of text sources
(one label each), or a Hugging Face dataset when the hub is reachable.
"""

from __future__ import annotations

import csv
import json
import random
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field

from probekit.contracts import InputPath, PluginParams
from probekit.errors import RunError
from probekit_plugins.datasets.text_sources import TextSource, hub_rows, read_sourced_documents

#: the nine Europarl-style languages of the paper that Debian's gnome-user-docs also ships ('C' is English)
GNOME_LANGUAGES = {"en": "C", "de": "de", "fr": "fr", "es": "es", "it": "it", "nl": "nl", "pt": "pt", "sv": "sv",
                   "el": "el"}


class TableSource(PluginParams):
    """A local table, one document per row: JSONL, CSV or Parquet (by file extension)."""

    kind: Literal["table"]
    path: InputPath = Field(description="a .jsonl, .csv or .parquet file")
    text_field: str = Field("text", description="column holding the text")
    label_field: str = Field("label", description="column holding the label")


class GnomeHelpSource(PluginParams):
    """Debian's gnome-user-docs: the same help pages in many languages (apt-get install gnome-user-docs)."""

    kind: Literal["gnome_help"]
    languages: list[str] = Field(default_factory=lambda: list(GNOME_LANGUAGES),
                                 description="labels: 'en' or a folder name under /usr/share/help")
    root: InputPath = Field("/usr/share/help", description="where the help pages are installed")


class MixtureSource(PluginParams):
    """Several unlabelled text sources, each giving its documents one label."""

    kind: Literal["mixture"]
    parts: dict[str, TextSource] = Field(description="label -> text source")


class HubSource(PluginParams):
    """A Hugging Face dataset (needs the hub and `pip install probekit[hub]`)."""

    kind: Literal["hub"]
    dataset: str = Field(description="dataset id, e.g. 'wesg/europarl'")
    config: str | None = Field(None, description="dataset configuration")
    split: str = Field("train", description="split to read")
    revision: str | None = Field(None, description="dataset revision")
    text_field: str = Field("text", description="column holding the text")
    label_field: str = Field("label", description="column holding the label")


LabeledSource = Annotated[Union[TableSource, GnomeHelpSource, MixtureSource, HubSource], Field(discriminator="kind")]


@dataclass(frozen=True)
class LabeledDocument:
    text: str
    label: str
    origin: str  # file:line or page, for messages


def documents_by_label(source: LabeledSource, per_label: int, seed: int) -> dict[str, list[LabeledDocument]]:
    """Up to ``per_label`` non-empty documents for every label, chosen reproducibly from ``seed``."""
    if isinstance(source, TableSource):
        return _cap(_table_documents(Path(source.path), source.text_field, source.label_field), per_label, seed)
    if isinstance(source, GnomeHelpSource):
        return {language: _gnome_documents(Path(source.root), language, per_label, seed)
                for language in source.languages}
    if isinstance(source, MixtureSource):
        # each origin (a file, a module) serves one label only: python_code and python_docstrings of one module
        # would otherwise put the same module's text on both sides of a label
        found, used = {}, set()
        for label, part in source.parts.items():
            found[label] = []
            for origin, text in read_sourced_documents(part, seed):
                if len(found[label]) == per_label:
                    break
                if origin not in used:
                    used.add(origin)
                    found[label].append(LabeledDocument(text, label, origin))
        return found
    return _cap(_hub_documents(source), per_label, seed)


def _cap(documents: Iterator[LabeledDocument], per_label: int, seed: int) -> dict[str, list[LabeledDocument]]:
    grouped: dict[str, list[LabeledDocument]] = {}
    for document in documents:
        grouped.setdefault(document.label, []).append(document)
    rng = random.Random(seed)
    for label in grouped:
        rng.shuffle(grouped[label])
        grouped[label] = grouped[label][:per_label]
    return dict(sorted(grouped.items()))


def _table_documents(path: Path, text_field: str, label_field: str) -> Iterator[LabeledDocument]:
    if not path.is_file():
        raise RunError(f"table source '{path}': no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise RunError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                    yield _row(record, text_field, label_field, f"{path}:{number}")
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for option, column in (("text_field", text_field), ("label_field", label_field)):
                if column not in columns:
                    raise RunError(f"{path}:1: the header has no column '{column}' (columns: {', '.join(columns)}); "
                                   f"name the right one with source.{option}")
            for number, record in enumerate(reader, start=2):  # line 1 is the header
                yield _row(record, text_field, label_field, f"{path}:{number}")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield _row(record, text_field, label_field, f"{path} row {number}")
    else:
        raise RunError(f"table source '{path}': use a .jsonl, .csv or .parquet file")


def _row(record: object, text_field: str, label_field: str, origin: str) -> LabeledDocument:
    if not isinstance(record, dict):
        raise RunError(f"{origin}: not an object with fields '{text_field}' and '{label_field}'")
    for option, name in (("text_field", text_field), ("label_field", label_field)):
        if name not in record:
            raise RunError(f"{origin}: no field '{name}' (fields: {', '.join(map(str, record))}); name the right one "
                           f"with source.{option}")
    if not isinstance(record[text_field], str):
        raise RunError(f"{origin}: no string field '{text_field}'")
    label = record[label_field]
    if label is None or label == "":
        raise RunError(f"{origin}: no value in field '{label_field}'")
    return LabeledDocument(record[text_field], str(label), origin)


def mallard_paragraphs(page: Path) -> list[str]:
    """Whitespace-normalised text of every <p> of a Mallard help page."""
    try:
        root = ElementTree.parse(page).getroot()
    except ElementTree.ParseError as error:
        raise RunError(f"{page}: not valid XML ({error})") from None
    paragraphs = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "p":
            text = re.sub(r"\s+", " ", "".join(element.itertext())).strip()
            if text:
                paragraphs.append(text)
    return paragraphs


def _gnome_documents(root: Path, language: str, limit: int, seed: int) -> list[LabeledDocument]:
    english = root / "C" / "gnome-help"
    folder = root / GNOME_LANGUAGES.get(language, language) / "gnome-help"
    if not english.is_dir():
        raise RunError(f"GNOME help pages not found under {root}; install them with: apt-get install gnome-user-docs")
    if not folder.is_dir():
        available = sorted(p.parent.name for p in root.glob("*/gnome-help"))
        raise RunError(f"no GNOME help pages for language '{language}' ({folder}); available: {', '.join(available)}")
    pages = sorted(folder.glob("*.page"))
    random.Random(seed).shuffle(pages)
    documents = []
    for page in pages:
        paragraphs = mallard_paragraphs(page)
        if language != "en" and (english / page.name).exists():
            untranslated = set(mallard_paragraphs(english / page.name))
            paragraphs = [p for p in paragraphs if p not in untranslated]
        if paragraphs:
            documents.append(LabeledDocument("\n".join(paragraphs), language, str(page)))
        if len(documents) == limit:
            break
    return documents


def _hub_documents(source: HubSource) -> Iterator[LabeledDocument]:
    rows = hub_rows(source.dataset, source.config, source.split, source.revision)
    for number, record in enumerate(rows, start=1):
        yield _row(record, source.text_field, source.label_field, f"{source.dataset} row {number}")
