"""Where a dataset's text comes from, all in one place: Python's standard library (the offline default), text files,
JSONL / CSV / Parquet tables, files a Debian package installs, GNOME help pages in many languages, a mixture of
sources (one label each), or a Hugging Face dataset when the hub is reachable.

Unlabelled sources (:data:`TextSource`) give documents; labelled ones (:data:`LabeledSource`) give documents with a
label. Every document keeps its origin (a file, a module, a table row): the split's groups come from it.
"""

from __future__ import annotations

import ast
import io
import random
import re
import sysconfig
import tokenize
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, Field

from probekit.contracts import InputPath, PluginParams
from probekit.datasets.files import jsonl_records, read_text, records, resolve_files, table_columns
from probekit.errors import RunError
from probekit.hub import hub_problem, unreachable_error

TextField = Annotated[str, Field(validation_alias=AliasChoices("text_field", "field"),
                                 description="field (column) holding the text ('field' is accepted too)")]


class StdlibSource(PluginParams):
    """Docstrings and comments of Python's own standard library: real English prose, available offline."""

    kind: Literal["stdlib"] = "stdlib"


class PythonCodeSource(PluginParams):
    """Source code of Python's own standard library, one module per document."""

    kind: Literal["python_code"]


class FilesSource(PluginParams):
    """Plain-text files: one file, every file of a directory (recursively), or a glob pattern."""

    kind: Literal["files"]
    path: InputPath = Field(description="a file, a directory, or a glob such as 'corpus/**/*.txt'")


class SystemFilesSource(PluginParams):
    """Files a Debian package installs (e.g. Go sources from golang-1.19-src), found by a glob."""

    kind: Literal["system"]
    glob: InputPath = Field(description="absolute glob, e.g. '/usr/share/go-1.19/src/**/*.go'")
    package: str = Field(description="the Debian package that installs the files, named in the error when missing")


class JsonlSource(PluginParams):
    """A JSONL file, one document per line, its text in ``text_field``."""

    kind: Literal["jsonl"]
    path: InputPath = Field(description="path of the .jsonl file")
    text_field: TextField = "text"


class TableSource(PluginParams):
    """A local table, one document per row: JSONL, CSV or Parquet (by file extension)."""

    kind: Literal["table"]
    path: InputPath = Field(description="a .jsonl, .csv or .parquet file")
    text_field: TextField = "text"
    label_field: str = Field("label", description="column holding the label")


class HubSource(PluginParams):
    """A Hugging Face dataset (needs the hub and `pip install probekit[hub]`); labelled datasets read
    ``label_field`` too."""

    kind: Literal["hub"]
    dataset: str = Field(description="dataset id, e.g. 'wesg/europarl'")
    config: str | None = Field(None, description="dataset configuration")
    split: str = Field("train", description="split to read")
    revision: str | None = Field(None, description="dataset revision")
    text_field: TextField = "text"
    label_field: str = Field("label", description="column holding the label (labelled datasets only)")


#: the nine Europarl-style languages of the paper that Debian's gnome-user-docs also ships ('C' is English)
GNOME_LANGUAGES = {"en": "C", "de": "de", "fr": "fr", "es": "es", "it": "it", "nl": "nl", "pt": "pt", "sv": "sv",
                   "el": "el"}


class GnomeHelpSource(PluginParams):
    """Debian's gnome-user-docs: the same help pages in many languages (apt-get install gnome-user-docs)."""

    kind: Literal["gnome_help"]
    languages: list[str] = Field(default_factory=lambda: list(GNOME_LANGUAGES),
                                 description="labels: 'en' or a folder name under /usr/share/help")
    root: InputPath = Field("/usr/share/help", description="where the help pages are installed")


TextSource = Annotated[
    Union[StdlibSource, FilesSource, JsonlSource, PythonCodeSource, SystemFilesSource, HubSource],
    Field(discriminator="kind"),
]


class MixtureSource(PluginParams):
    """Several unlabelled text sources, each giving its documents one label."""

    kind: Literal["mixture"]
    parts: dict[str, TextSource] = Field(description="label -> text source")


LabeledSource = Annotated[Union[TableSource, GnomeHelpSource, MixtureSource, HubSource], Field(discriminator="kind")]

#: what to use instead of a hub dataset
LOCAL_SOURCES = ("kind: files or jsonl for text; kind: table (JSONL / CSV / Parquet with text and label columns), "
                 "gnome_help or mixture for labelled documents")


@dataclass(frozen=True)
class LabeledDocument:
    """A document's text, its label, and its origin (file:line, page, module): for messages and as its group."""

    text: str
    label: str
    origin: str


# -- unlabelled documents ---------------------------------------------------------------------------------------------


def read_documents(source: TextSource, seed: int) -> Iterator[str]:
    """Yield the source's documents (non-empty strings); stdlib and directory order is shuffled by ``seed``."""
    return (text for _, text in read_sourced_documents(source, seed))


def read_sourced_documents(source: TextSource, seed: int) -> Iterator[tuple[str, str]]:
    """Yield ``(origin, text)`` per document: where it comes from (a file, a standard-library module relative to the
    library's root, so its code and its docstrings share one origin; ``file:line``; a hub row) and its text."""
    if isinstance(source, (StdlibSource, PythonCodeSource)):
        root = Path(sysconfig.get_paths()["stdlib"])
        for path in _stdlib_files(seed):
            text = docstrings_and_comments(path) if isinstance(source, StdlibSource) else _python_code(path)
            if text.strip():
                yield str(path.relative_to(root)), text
    elif isinstance(source, (FilesSource, SystemFilesSource)):
        pattern = source.path if isinstance(source, FilesSource) else source.glob
        try:
            files = resolve_files(pattern, what="text source")
        except RunError:
            if isinstance(source, SystemFilesSource):
                raise RunError(f"no file matches {pattern}; install them with: apt-get install {source.package}") \
                    from None
            raise
        random.Random(seed).shuffle(files)
        for file in files:
            text = read_text(file)
            if text.strip():
                yield str(file), text
    else:
        rows = _hub_records(source) if isinstance(source, HubSource) else jsonl_records(Path(source.path))
        for origin, record in rows:
            text = _text(record, source.text_field, origin)
            if text.strip():
                yield origin, text


def _text(record: dict[str, Any], field: str, origin: str) -> str:
    if not isinstance(record.get(field), str):
        raise RunError(f"{origin}: no string field '{field}'")
    return record[field]


#: standard-library folders that hold tests or vendored code rather than documented library modules
STDLIB_SKIPPED_DIRS = {"test", "tests", "site-packages", "idlelib", "lib2to3", "__pycache__", "turtledemo"}


def _stdlib_files(seed: int) -> Iterator[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        path for path in root.rglob("*.py") if not STDLIB_SKIPPED_DIRS.intersection(path.relative_to(root).parts)
    )
    random.Random(seed).shuffle(files)
    yield from files


def _python_code(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


def docstrings_and_comments(source: bytes | Path) -> str:
    """Docstrings (module, classes, functions) and comment paragraphs of Python source, blank-line separated."""
    if isinstance(source, Path):
        source = source.read_bytes()
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.tokenize(io.BytesIO(source).readline))
    except (SyntaxError, ValueError, tokenize.TokenError, UnicodeDecodeError):
        return ""
    pieces = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node)
            if docstring:
                pieces.append(docstring)
    paragraph: list[str] = []  # consecutive full-line comments form one paragraph; inline comments stand alone
    last_line = -2
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        text = token.string.lstrip("#").strip()
        full_line = token.line.strip().startswith("#")
        if paragraph and not (full_line and token.start[0] == last_line + 1):
            pieces.append(" ".join(paragraph))
            paragraph = []
        if text and not text.startswith("!"):
            if full_line:
                paragraph.append(text)
                last_line = token.start[0]
            else:
                pieces.append(text)
    if paragraph:
        pieces.append(" ".join(paragraph))
    return "\n\n".join(pieces)


# -- labelled documents -----------------------------------------------------------------------------------------------


def documents_by_label(source: LabeledSource, per_label: int, seed: int) -> dict[str, list[LabeledDocument]]:
    """Up to ``per_label`` non-empty documents for every label, chosen reproducibly from ``seed``."""
    if isinstance(source, TableSource):
        return _cap(_table_documents(source), per_label, seed)
    if isinstance(source, GnomeHelpSource):
        return {language: _gnome_documents(Path(source.root), language, per_label, seed)
                for language in source.languages}
    if isinstance(source, MixtureSource):
        # each origin (a file, a module) serves one label only: python_code and python_docstrings of one module
        # would otherwise put the same module's text on both sides of a label
        found: dict[str, list[LabeledDocument]] = {}
        used: set[str] = set()
        for label, part in source.parts.items():
            found[label] = []
            for origin, text in read_sourced_documents(part, seed):
                if len(found[label]) == per_label:
                    break
                if origin not in used:
                    used.add(origin)
                    found[label].append(LabeledDocument(text, label, origin))
        return found
    return _cap((_labeled(record, source.text_field, source.label_field, origin)
                 for origin, record in _hub_records(source)), per_label, seed)


def _cap(documents: Iterator[LabeledDocument], per_label: int, seed: int) -> dict[str, list[LabeledDocument]]:
    grouped: dict[str, list[LabeledDocument]] = {}
    for document in documents:
        grouped.setdefault(document.label, []).append(document)
    rng = random.Random(seed)
    for label in grouped:
        rng.shuffle(grouped[label])
        grouped[label] = grouped[label][:per_label]
    return dict(sorted(grouped.items()))


def _table_documents(source: TableSource) -> Iterator[LabeledDocument]:
    path = Path(source.path)
    if path.suffix.lower() == ".csv":  # a missing column is named once, at the header
        columns = table_columns(path)
        for option, column in (("text_field", source.text_field), ("label_field", source.label_field)):
            if column not in columns:
                raise RunError(f"{path}:1: the header has no column '{column}' (columns: {', '.join(columns)}); "
                               f"name the right one with source.{option}")
    for origin, record in records(path):
        yield _labeled(record, source.text_field, source.label_field, origin)


def _labeled(record: dict[str, Any], text_field: str, label_field: str, origin: str) -> LabeledDocument:
    for option, name in (("text_field", text_field), ("label_field", label_field)):
        if name not in record:
            raise RunError(f"{origin}: no field '{name}' (fields: {', '.join(map(str, record))}); name the right one "
                           f"with source.{option}")
    label = record[label_field]
    if label is None or label == "":
        raise RunError(f"{origin}: no value in field '{label_field}'")
    return LabeledDocument(_text(record, text_field, origin), str(label), origin)


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


# -- the hub ----------------------------------------------------------------------------------------------------------


def _hub_records(source: HubSource) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(dataset row N, record)`` of a Hugging Face dataset, or a RunError naming the local alternatives when it
    cannot be loaded."""
    try:
        import datasets
    except ImportError:
        raise RunError("the 'hub' source needs the datasets package: pip install 'probekit[hub]'") from None
    problem = hub_problem(source.dataset, "dataset", source.revision)  # one timed question before datasets' retries
    if problem:
        raise unreachable_error(f"hub dataset '{source.dataset}'", problem, "set HF_HUB_OFFLINE=1 to read it from "
                                f"the local datasets cache, or use a local source: {LOCAL_SOURCES}")
    try:
        rows = datasets.load_dataset(source.dataset, source.config, split=source.split, revision=source.revision)
    except Exception as error:  # the hub client raises many kinds of errors when offline
        raise RunError(
            f"cannot load hub dataset '{source.dataset}': {type(error).__name__}: {error}\nWithout the hub, use a "
            f"local source instead: {LOCAL_SOURCES}."
        ) from None
    for number, record in enumerate(rows, start=1):
        if not isinstance(record, dict):
            raise RunError(f"{source.dataset} row {number}: not a record")
        yield f"{source.dataset} row {number}", record
