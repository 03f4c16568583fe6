"""Where raw text comes from: Python's standard library (offline default), text files, or a JSONL file."""

from __future__ import annotations

import ast
import glob
import io
import json
import random
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field

from probekit.contracts import InputPath, PluginParams
from probekit.errors import RunError
from probekit_plugins.hub import hub_problem, unreachable_error


class StdlibSource(PluginParams):
    """Docstrings and comments of Python's own standard library: real English prose, available offline."""

    kind: Literal["stdlib"] = "stdlib"


class FilesSource(PluginParams):
    """Plain-text files: one file, every file of a directory (recursively), or a glob pattern."""

    kind: Literal["files"]
    path: InputPath = Field(description="a file, a directory, or a glob such as 'corpus/**/*.txt'")


class JsonlSource(PluginParams):
    """A JSONL file, one document per line, its text in ``field``."""

    kind: Literal["jsonl"]
    path: InputPath = Field(description="path of the .jsonl file")
    field: str = Field("text", description="name of the text field")


class PythonCodeSource(PluginParams):
    """Source code of Python's own standard library, one module per document."""

    kind: Literal["python_code"]


class SystemFilesSource(PluginParams):
    """Files a Debian package installs (e.g. Go sources from golang-1.19-src), found by a glob."""

    kind: Literal["system"]
    glob: InputPath = Field(description="absolute glob, e.g. '/usr/share/go-1.19/src/**/*.go'")
    package: str = Field(description="the Debian package that installs the files, named in the error when missing")


class HubTextSource(PluginParams):
    """A Hugging Face dataset's text column (needs the hub and `pip install probekit[hub]`)."""

    kind: Literal["hub"]
    dataset: str = Field(description="dataset id")
    config: str | None = Field(None, description="dataset configuration")
    split: str = Field("train", description="split to read")
    revision: str | None = Field(None, description="dataset revision")
    field: str = Field("text", description="column holding the text")


TextSource = Annotated[
    Union[StdlibSource, FilesSource, JsonlSource, PythonCodeSource, SystemFilesSource, HubTextSource],
    Field(discriminator="kind"),
]

#: standard-library folders that hold tests or vendored code rather than documented library modules
STDLIB_SKIPPED_DIRS = {"test", "tests", "site-packages", "idlelib", "lib2to3", "__pycache__", "turtledemo"}


def read_documents(source: StdlibSource | FilesSource | JsonlSource, seed: int) -> Iterator[str]:
    """Yield the source's documents (non-empty strings); stdlib and directory order is shuffled by ``seed``."""
    return (text for _, text in read_sourced_documents(source, seed))


def read_sourced_documents(source: StdlibSource | FilesSource | JsonlSource, seed: int) -> Iterator[tuple[str, str]]:
    """Yield ``(origin, text)`` per document: where it comes from (a file, a standard-library module relative to the
    library's root, so its code and its docstrings share one origin; ``file:line``; a hub row) and its text."""
    if isinstance(source, StdlibSource):
        root = Path(sysconfig.get_paths()["stdlib"])
        for path in _stdlib_files(seed):
            text = docstrings_and_comments(path)
            if text:
                yield str(path.relative_to(root)), text
    elif isinstance(source, PythonCodeSource):
        root = Path(sysconfig.get_paths()["stdlib"])
        for path in _stdlib_files(seed):
            text = _decode(path)
            if text.strip():
                yield str(path.relative_to(root)), text
    elif isinstance(source, FilesSource):
        yield from _file_documents(source.path, seed)
    elif isinstance(source, SystemFilesSource):
        if not any(Path(p).is_file() for p in glob.iglob(source.glob, recursive=True)):
            raise RunError(f"no file matches {source.glob}; install them with: apt-get install {source.package}")
        yield from _file_documents(source.glob, seed)
    elif isinstance(source, HubTextSource):
        for number, record in enumerate(hub_rows(source.dataset, source.config, source.split, source.revision), 1):
            text = record.get(source.field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise RunError(f"{source.dataset} row {number}: no string field '{source.field}'")
            if text.strip():
                yield f"{source.dataset} row {number}", text
    else:
        yield from _jsonl_documents(Path(source.path), source.field)


#: what to use instead of a hub dataset
LOCAL_SOURCES = ("kind: files or jsonl for text; kind: table (JSONL / CSV / Parquet with text and label columns), "
                 "gnome_help or mixture for labelled documents")


def hub_rows(dataset: str, config: str | None, split: str, revision: str | None) -> Iterator[dict]:
    """Rows of a Hugging Face dataset, or a RunError that names the local alternatives when it cannot load."""
    try:
        import datasets
    except ImportError:
        raise RunError("the 'hub' source needs the datasets package: pip install 'probekit[hub]'") from None
    problem = hub_problem(dataset, "dataset", revision)  # one question, with a timeout, before datasets' retries
    if problem:
        raise unreachable_error(f"hub dataset '{dataset}'", problem, "set HF_HUB_OFFLINE=1 to read it from the local "
                                f"datasets cache, or use a local source: {LOCAL_SOURCES}")
    try:
        rows = datasets.load_dataset(dataset, config, split=split, revision=revision)
    except Exception as error:  # the hub client raises many kinds of errors when offline
        raise RunError(
            f"cannot load hub dataset '{dataset}': {type(error).__name__}: {error}\nWithout the hub, use a local "
            f"source instead: {LOCAL_SOURCES}."
        ) from None
    yield from rows


def _stdlib_files(seed: int) -> Iterator[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        path for path in root.rglob("*.py") if not STDLIB_SKIPPED_DIRS.intersection(path.relative_to(root).parts)
    )
    random.Random(seed).shuffle(files)
    yield from files


def _decode(path: Path) -> str:
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


def _file_documents(pattern: str, seed: int) -> Iterator[tuple[str, str]]:
    path = Path(pattern)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise RunError(f"text source '{pattern}': no such file, directory or matching files")
    random.Random(seed).shuffle(files)
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise RunError(f"{file}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        if text.strip():
            yield str(file), text


def _jsonl_documents(path: Path, field: str) -> Iterator[tuple[str, str]]:
    if not path.is_file():
        raise RunError(f"text source '{path}': no such file")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RunError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise RunError(f"{path}:{number}: no string field '{field}'")
            if record[field].strip():
                yield f"{path}:{number}", record[field]
