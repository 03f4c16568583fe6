"""A strict CoNLL-U reader (Universal Dependencies): documents of sentences of words, with each word's character span
in the document text rebuilt from the surface forms and ``SpaceAfter=No``.

Multiword tokens ("1-2 don't") carry the surface form; their words ("do", "n't") get the parts of the surface
span when their forms spell it, otherwise they all share it. Empty nodes ("1.1") are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from probekit.api import RunError, read_text, resolve_files

FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
FEATURE = re.compile(r"^[A-Za-z0-9\[\]]+=[A-Za-z0-9]+(,[A-Za-z0-9]+)*$")
SPACES_ESCAPES = {"\\s": " ", "\\t": "\t", "\\n": "\n", "\\p": "|", "\\\\": "\\"}


@dataclass(frozen=True)
class Word:
    """One syntactic word: its labels and its character span in the document text."""

    form: str
    upos: str
    deprel: str
    feats: dict[str, tuple[str, ...]]
    start: int
    end: int


@dataclass
class Document:
    """A document's text and its words in order; ``sentences`` are character ranges of the text."""

    name: str
    text: str = ""
    words: list[Word] = field(default_factory=list)
    sentences: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Unit:
    """A surface token: a plain word or a multiword token, and what follows it in the text."""

    form: str
    after: str
    words: list[tuple[str, str, str, dict[str, tuple[str, ...]]]] = field(default_factory=list)


def conllu_files(pattern: str) -> list[Path]:
    """A .conllu file, every .conllu / .conllu.gz file under a directory, or the files matching a glob."""
    return resolve_files(pattern, (".conllu", ".conllu.gz"), what="CoNLL-U source")


def read_conllu(path: Path) -> list[Document]:
    """Parse one CoNLL-U file into documents (``# newdoc`` starts one; each file starts one)."""
    reader = _Reader(path)
    number = 0
    for number, line in _lines(path):
        reader.line(number, line.rstrip("\r\n"))
    return reader.finish(number + 1)


class _Reader:
    """Line-by-line state of one file: the current document, sentence units and the next expected word id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.documents: list[Document] = []
        self.current = Document(f"{path.name}#1")
        self.units: list[_Unit] = []
        self.new_paragraph = False
        self.expected = 1
        self.open_range: tuple[int, int] | None = None
        self.sentence_line = 0

    def error(self, number: int, message: str) -> RunError:
        return RunError(f"{self.path}:{number}: {message}")

    def line(self, number: int, line: str) -> None:
        if not line.strip():
            self.close_sentence(number)
        elif line.startswith("#"):
            self.comment(number, line)
        else:
            self.word_line(number, line)

    def comment(self, number: int, line: str) -> None:
        if self.units:
            raise self.error(number, "comment line inside a sentence (a blank line must end it first)")
        key = line[1:].split("=", 1)[0].strip()
        if key in ("newdoc", "newdoc id"):
            if self.current.words:
                self.documents.append(self.current)
            label = line.split("=", 1)[1].strip() if "=" in line else f"{len(self.documents) + 1}"
            self.current = Document(f"{self.path.name}#{label}")
            self.new_paragraph = False
        elif key in ("newpar", "newpar id"):
            self.new_paragraph = bool(self.current.words)

    def word_line(self, number: int, line: str) -> None:
        columns = line.split("\t")
        if len(columns) != 10:
            raise self.error(number, f"expected 10 tab-separated fields, found {len(columns)}")
        token_id, form, _, upos, _, feats, _, deprel, _, misc = columns
        if not self.units:
            self.sentence_line = number
        if re.fullmatch(r"\d+\.\d+", token_id):
            return  # empty node of the enhanced graph: no surface form
        if match := re.fullmatch(r"(\d+)-(\d+)", token_id):
            low, high = int(match[1]), int(match[2])
            if low != self.expected or high <= low or self.open_range is not None:
                raise self.error(number, f"multiword token {token_id} does not start at word {self.expected}")
            self.open_range = (low, high)
            self.units.append(_Unit(form, _space_after(misc, f"{self.path}:{number}")))
            return
        if not token_id.isdigit():
            raise self.error(number, f"ID '{token_id}' is neither a word index, a range nor an empty node")
        if int(token_id) != self.expected:
            raise self.error(number, f"word ID {token_id} out of order (expected {self.expected}; sentence starts "
                                     f"at line {self.sentence_line})")
        if not form or upos in ("", "_") or not deprel:
            raise self.error(number, f"word {token_id} lacks a FORM, UPOS or DEPREL")
        where = f"{self.path}:{number}"
        word = (form, upos, deprel, _features(feats, where))
        if self.open_range is not None:
            self.units[-1].words.append(word)
            if self.expected == self.open_range[1]:
                self.open_range = None
        else:
            self.units.append(_Unit(form, _space_after(misc, where), [word]))
        self.expected += 1

    def close_sentence(self, number: int) -> None:
        if self.open_range is not None:
            low, high = self.open_range
            raise self.error(number, f"multiword token {low}-{high} lacks its words")
        if self.units:
            _append_sentence(self.current, self.units, "\n" if self.new_paragraph else " ")
        self.units, self.expected, self.new_paragraph = [], 1, False

    def finish(self, number: int) -> list[Document]:
        self.close_sentence(number)
        if self.current.words:
            self.documents.append(self.current)
        if not self.documents:
            raise RunError(f"{self.path}: no sentences (is this a CoNLL-U file?)")
        return self.documents


def read_conllu_documents(pattern: str) -> Iterator[Document]:
    """Documents of every CoNLL-U file of ``pattern`` (see :func:`conllu_files`), in file order."""
    for path in conllu_files(pattern):
        yield from read_conllu(path)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    return enumerate(read_text(path).splitlines(), start=1)


def _features(text: str, where: str) -> dict[str, tuple[str, ...]]:
    if text == "_":
        return {}
    features = {}
    for item in text.split("|"):
        if not FEATURE.match(item):
            raise RunError(f"{where}: malformed FEATS item '{item}' (expected Name=Value[,Value])")
        name, values = item.split("=", 1)
        features[name] = tuple(values.split(","))
    return features


def _space_after(misc: str, where: str) -> str:
    """What follows a surface token in the text: from SpacesAfter (escaped), SpaceAfter=No, or one space."""
    if misc == "_":
        return " "
    items = dict(item.split("=", 1) if "=" in item else (item, "") for item in misc.split("|"))
    if "SpacesAfter" in items:
        return re.sub(r"\\[stnp\\]", lambda m: SPACES_ESCAPES[m[0]], items["SpacesAfter"])
    if items.get("SpaceAfter") == "No":
        return ""
    if "SpaceAfter" in items and items["SpaceAfter"] != "Yes":
        raise RunError(f"{where}: SpaceAfter must be 'No', found '{items['SpaceAfter']}'")
    return " "


def _append_sentence(document: Document, units: list[_Unit], separator: str) -> None:
    """Append a sentence's surface forms to the document text and its words with their spans."""
    if document.text:
        document.text += separator if not document.text[-1].isspace() else ""
    sentence_start = position = len(document.text)
    pieces = []
    for index, unit in enumerate(units):
        start, end = position, position + len(unit.form)
        document.words.extend(_word_spans(unit, start, end))
        after = unit.after if index < len(units) - 1 else ""
        pieces.append(unit.form + after)
        position = end + len(after)
    document.text += "".join(pieces)
    document.sentences.append((sentence_start, position))


def _word_spans(unit: _Unit, start: int, end: int) -> Iterator[Word]:
    forms = [form for form, *_ in unit.words]
    spelled = "".join(forms).lower() == unit.form.lower()
    position = start
    for form, upos, deprel, feats in unit.words:
        if spelled:
            yield Word(form, upos, deprel, feats, position, position + len(form))
            position += len(form)
        else:
            yield Word(form, upos, deprel, feats, start, end)
