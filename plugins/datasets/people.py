"""Facts about people (Gurnee et al. 2023, "Wikidata" features): gender, occupation, party or any property of a
table of names, probed on the surname tokens (max over them) of each name in a text corpus or in templates."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from probekit.api import (
    CandidateSites,
    DatasetPlugin,
    FeatureDraw,
    InputPath,
    PositiveShare,
    ProbingDataset,
    RunError,
    SamplingParams,
    SkippedFeature,
    TextSource,
    TokenizedDocument,
    assemble_windows,
    content_length,
    read_documents,
    sample_balanced,
    special_frame,
    tokenize_documents,
    tokens_overlapping,
)
from probekit_plugins.datasets.people_table import NameFinder, Person, read_people, surname_span

#: neutral contexts that end with the name (the window ends at the name anyway)
DEFAULT_TEMPLATES = (
    "The life of {name}",
    "A short biography of {name}",
    "An interview with {name}",
    "This is a photograph of {name}",
    "Yesterday I read an article about {name}",
    "Everyone has heard of {name}",
)


class PeopleParams(SamplingParams):
    table: InputPath = Field(description="a .csv or .jsonl table: a name column and property columns (an empty cell is "
                       "unknown)")
    name_column: str = Field("name", description="the column holding each person's full name")
    columns: list[str] | None = Field(None, description="property columns to probe (default: every other column); "
                                      "one feature per value, e.g. 'gender=female'")
    source: TextSource | None = Field(None, description="a text corpus to find the names in; without one, the "
                                      "names are put into `templates`")
    templates: list[str] = Field(list(DEFAULT_TEMPLATES), min_length=1,
                                 description="contexts with '{name}', used when there is no `source`")
    max_documents: int | None = Field(None, ge=1, description="read at most this many documents of the source")
    window_length: int = Field(128, ge=4, description="tokens per sequence, special tokens included; the window "
                               "ends with the surname")
    max_per_name: int = Field(3, ge=1, description="examples per name at most (paper: 3)")
    min_occurrences: int = Field(2, ge=1, description="names found fewer times in the corpus are dropped "
                                 "(paper: names occurring once are dropped)")
    max_values: int = Field(30, ge=2, description="columns with more distinct values are not categorical and are "
                            "skipped")
    min_count: int = Field(10, ge=1, description="examples a value needs (positive and negative) to be a feature")
    positive_fraction: PositiveShare = (0.1, 0.5)

    @field_validator("templates")
    @classmethod
    def _templates_have_a_name(cls, templates: list[str]) -> list[str]:
        for template in templates:
            if "{name}" not in template:
                raise ValueError(f"template {template!r} has no '{{name}}'")
        return templates



@dataclass(frozen=True)
class Mention:
    """One example: a person's name at characters ``start:end`` of document ``document``."""

    person: int
    document: int
    start: int
    end: int


class People(DatasetPlugin):
    """Properties of people (gender, occupation, party, ...) read from their surname tokens."""

    Params = PeopleParams
    params: PeopleParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        frame = special_frame(tokenizer)
        content = content_length(tokenizer, frame, p.window_length)
        people, columns = read_people(p.table, p.name_column, p.columns)
        rng = np.random.default_rng(p.seed)
        texts, mentions = (self._corpus_mentions(people, rng) if p.source is not None
                           else self._template_mentions(people, rng))
        documents = tokenize_documents(tokenizer, texts)
        candidates, persons = surname_sites(documents, mentions, content)
        if len(persons) == 0:
            raise RunError(f"people: no name of '{p.table}' could be placed in a window of {p.window_length} tokens")

        draws: list[FeatureDraw] = []
        skipped: list[SkippedFeature] = []
        for column in columns:
            values = np.asarray([people[i].properties.get(column, "") for i in persons], dtype=object)
            known = values != ""
            distinct = sorted(set(values[known]))
            if len(distinct) < 2:
                skipped.append(SkippedFeature(column, f"{len(distinct)} distinct value(s) among the examples"))
                continue
            if len(distinct) > p.max_values:
                skipped.append(SkippedFeature(column, f"{len(distinct)} distinct values: not categorical "
                                                      f"(max_values {p.max_values})"))
                continue
            for value in distinct:
                name = f"{column}={value}"
                is_positive = values == value
                n_positive, n_negative = int(is_positive.sum()), int((known & ~is_positive).sum())
                if min(n_positive, n_negative) < p.min_count:
                    skipped.append(SkippedFeature(name, f"{n_positive} positive / {n_negative} negative examples; "
                                                        f"min_count is {p.min_count}"))
                    continue
                pool = np.flatnonzero(known)
                picked = pool[sample_balanced(is_positive[pool], p.max_examples, p.positive_fraction, rng)]
                draws.append(FeatureDraw(name, picked, is_positive[picked]))
        return assemble_windows(documents, frame, content, candidates, draws, "max", skipped)

    def _template_mentions(self, people: list[Person], rng: np.random.Generator) -> tuple[list[str], list[Mention]]:
        templates = self.params.templates
        texts, mentions = [], []
        for index, person in enumerate(people):
            count = min(self.params.max_per_name, len(templates))
            for choice in sorted(rng.choice(len(templates), count, replace=False)):
                template = templates[int(choice)]
                start = template.index("{name}")
                texts.append(template.replace("{name}", person.name))
                mentions.append(Mention(index, len(texts) - 1, start, start + len(person.name)))
        return texts, mentions

    def _corpus_mentions(self, people: list[Person], rng: np.random.Generator) -> tuple[list[str], list[Mention]]:
        p = self.params
        assert p.source is not None
        finder = NameFinder([person.name for person in people])
        found: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        texts: list[str] = []
        for number, text in enumerate(read_documents(p.source, p.seed)):
            if p.max_documents is not None and number >= p.max_documents:
                break
            texts.append(text)
            for person, start, end in finder.find(text):
                found[person].append((len(texts) - 1, start, end))
        if not texts:
            raise RunError("people: the text source yielded no text")
        mentions = []
        for person in sorted(found):
            occurrences = found[person]
            if len(occurrences) < p.min_occurrences:
                continue
            chosen = rng.choice(len(occurrences), min(p.max_per_name, len(occurrences)), replace=False)
            mentions += [Mention(person, *occurrences[int(i)]) for i in sorted(chosen)]
        if not mentions:
            raise RunError(f"people: no name of '{p.table}' occurs at least {p.min_occurrences} times in the text "
                           f"source ({len(texts)} documents)")
        used = sorted({m.document for m in mentions})  # keep only the documents with a mention
        renumber = {old: new for new, old in enumerate(used)}
        return ([texts[i] for i in used],
                [Mention(m.person, renumber[m.document], m.start, m.end) for m in mentions])


def surname_sites(
    documents: list[TokenizedDocument], mentions: list[Mention], content: int
) -> tuple[CandidateSites, np.ndarray]:
    """The surname tokens of every mention (document, first token, last token + 1) and the mention's person;
    mentions whose surname covers no token or does not fit in a window are dropped.

    Each site's group is its surname: all mentions of a person, and people who share a surname (Bill and Hillary
    Clinton), land on one side of the split, so a probe cannot score by recognising a surname it was trained on."""
    rows: list[tuple[int, int, int, int]] = []  # document, first surname token, last + 1, person
    surnames: list[str] = []
    for mention in mentions:
        document = documents[mention.document]
        first, last = surname_span(document.text[mention.start : mention.end])
        tokens = tokens_overlapping(document, mention.start + first, mention.start + last)
        if len(tokens) and tokens[-1] + 1 - tokens[0] <= content:
            rows.append((mention.document, int(tokens[0]), int(tokens[-1]) + 1, mention.person))
            surnames.append(document.text[mention.start + first : mention.start + last].casefold())
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    _, surname_group = np.unique(np.asarray(surnames, dtype=str), return_inverse=True)
    return CandidateSites(table[:, 0], table[:, 1], table[:, 2], surname_group.astype(np.int64)), table[:, 3]
