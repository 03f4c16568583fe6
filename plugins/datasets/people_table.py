"""A table of people and their properties (CSV or JSONL), and finding their names in text.

Each row has a name and any property columns (gender, occupation, party, ...); an empty cell means "unknown".
When a name occurs on several rows, the row with more known properties is kept (the paper's heuristic for
Wikidata entities sharing a name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from probekit.api import RunError, records

#: words after a surname that are not the surname
NAME_SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}
WORD = re.compile(r"\w+(?:['’\-]\w+)*")
PIECE = re.compile(r"\w+")


@dataclass(frozen=True)
class Person:
    """A name and its known properties (column -> value; unknown columns are absent)."""

    name: str
    properties: dict[str, str]


def surname_span(name: str) -> tuple[int, int]:
    """Character span of the surname in a name as written: its last word, suffixes such as "Jr." skipped."""
    words = list(WORD.finditer(name))
    if not words:
        raise ValueError(f"{name!r} has no word")
    while len(words) > 1 and words[-1][0].lower() in NAME_SUFFIXES:
        words.pop()
    return words[-1].span()


def read_people(path: str, name_column: str, columns: list[str] | None) -> tuple[list[Person], list[str]]:
    """People of a .csv or .jsonl table and the property columns used (``columns`` or every other column)."""
    file = Path(path)
    if not file.is_file():
        raise RunError(f"people table '{path}': no such file")
    if file.suffix.lower() not in (".csv", ".jsonl"):
        raise RunError(f"{path}: a people table must be a .csv or .jsonl file")
    rows = list(records(file))
    if not rows:
        raise RunError(f"{path}: no rows")
    present = list(dict.fromkeys(key for _, row in rows for key in row))
    if name_column not in present:
        raise RunError(f"{path}: no '{name_column}' column (columns: {', '.join(present)})")
    properties = columns if columns is not None else [c for c in present if c != name_column]
    missing = [c for c in properties if c not in present]
    if missing:
        raise RunError(f"{path}: no column(s) {', '.join(missing)} (columns: {', '.join(present)})")

    people: dict[str, Person] = {}
    for origin, row in rows:
        for key, value in row.items():
            if isinstance(value, (dict, list)):
                raise RunError(f"{origin}: '{key}' must be a string, number, boolean or null")
        name = " ".join(str(row.get(name_column) or "").split())
        if not WORD.search(name):
            raise RunError(f"{origin}: empty '{name_column}'")
        known = {c: _cell(row.get(c)) for c in properties}
        person = Person(name, {c: v for c, v in known.items() if v})
        kept = people.get(name)
        if kept is None or len(person.properties) > len(kept.properties):
            people[name] = person
    return list(people.values()), properties


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())


class NameFinder:
    """Finds whole-word occurrences of many names in text: candidate positions come from a dictionary lookup of
    each name's last word, then the full name (any whitespace between its words) is checked there."""

    def __init__(self, names: list[str]) -> None:
        self._by_last_word: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        for index, name in enumerate(names):
            words = PIECE.findall(name)
            if not words:
                continue
            pattern = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(part) for part in name.split()) + r"(?!\w)")
            self._by_last_word.setdefault(words[-1], []).append((index, pattern))
        self._longest = max((len(n) for n in names), default=0)

    def find(self, text: str) -> Iterator[tuple[int, int, int]]:
        """(name index, start, end) of every occurrence, left to right; a longer name wins over a name it ends
        with ("John Quincy Adams" over "Quincy Adams")."""
        for word in PIECE.finditer(text):
            candidates = self._by_last_word.get(word[0])
            if not candidates:
                continue
            best: tuple[int, int, int] | None = None
            low = max(0, word.start() - 4 * self._longest)
            for index, pattern in candidates:
                for match in pattern.finditer(text, low, min(len(text), word.end() + self._longest)):
                    ends_here = match.start() <= word.start() and word.end() <= match.end() \
                        and not PIECE.search(text, word.end(), match.end())
                    if ends_here and (best is None or match.start() < best[1]):
                        best = (index, match.start(), match.end())
            if best is not None:
                yield best
