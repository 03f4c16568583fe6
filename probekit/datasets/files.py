"""Reading the files datasets are made of: one resolver for a file, a directory or a glob; text (gzip too); and one
reader for record tables (JSONL, CSV, Parquet). Every problem is a :class:`RunError` naming the file and line."""

from __future__ import annotations

import csv
import glob
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from probekit.errors import RunError


def resolve_files(pattern: str, suffixes: Sequence[str] = (), what: str = "source") -> list[Path]:
    """The files a user named: one file, every file under a directory (those ending in ``suffixes`` when given),
    or the files matching a glob (``**`` recurses); sorted. None found is an error naming ``what`` and ``pattern``."""
    path = Path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and (not suffixes or p.name.endswith(tuple(suffixes))))
    else:
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        kinds = f" ({', '.join(suffixes)})" if suffixes else ""
        raise RunError(f"{what} '{pattern}': no such file, directory or matching files{kinds}")
    return files


def read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when its name ends in ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise RunError(f"{path}: cannot read ({error})") from None


def read_text(path: Path, fallback: str | None = None) -> str:
    """A file's text as UTF-8 (``.gz`` decompressed); when it is not UTF-8, decoded with ``fallback`` (e.g.
    ``"latin-1"`` for old TeX sources), or an error naming the file and the byte."""
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if fallback is not None:
            return raw.decode(fallback)
        raise RunError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(origin, record)`` for every row of a ``.jsonl`` / ``.ndjson``, ``.csv`` or ``.parquet`` table; the origin is
    ``file:line`` (``file row N`` for Parquet), for messages and as the row's identity."""
    if not path.is_file():
        raise RunError(f"table '{path}': no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from jsonl_records(path)
    elif suffix == ".csv":
        yield from csv_records(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path} row {number}", record
    else:
        raise RunError(f"table '{path}': use a .jsonl, .csv or .parquet file")


def jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, object)`` for every non-blank line of a JSONL file (read line by line: corpora can be large);
    each line must be a JSON object."""
    if not path.is_file():
        raise RunError(f"'{path}': no such file")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:  # type: ignore[operator]
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RunError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise RunError(f"{path}:{number}: expected a JSON object")
                yield f"{path}:{number}", record
    except UnicodeDecodeError as error:
        raise RunError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (OSError, EOFError) as error:
        raise RunError(f"{path}: cannot read ({error})") from None


def csv_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, row)`` for every non-blank row of a CSV file with a header line; a row with another number of
    fields than the header is an error."""
    reader = csv.reader(read_text(path).splitlines())
    try:
        header = [name.strip() for name in next(reader, [])]
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise RunError(f"{path}:{reader.line_num}: {len(fields)} fields, the header has {len(header)}")
            yield f"{path}:{reader.line_num}", dict(zip(header, fields))
    except csv.Error as error:
        raise RunError(f"{path}: malformed CSV ({error})") from None


def table_columns(path: Path) -> list[str]:
    """The column names of a table, in order (the CSV header, or every key found in a JSONL file)."""
    if path.suffix.lower() == ".csv":
        line = next(iter(read_text(path).splitlines()), "")
        return [name.strip() for name in next(csv.reader([line]), [])]
    return list(dict.fromkeys(key for _, record in records(path) for key in record))
