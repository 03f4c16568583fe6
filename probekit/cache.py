"""The activation cache: one ``.npy`` file per (model, dataset sites, layer), readable by numpy alone.

A file is keyed by the model's identity (id, revision, dtype), the dataset's activation fingerprint (tokens and probe
sites) and the layer. Rows are written straight to disk as batches finish (``os.pwrite``) into a locked
``.partial.*`` file, so memory stays bounded by the batch. When every row is written, a JSON description
(``<key>.json``: key, shape, size and an xxh3-128 checksum of the file) is written, then the file is renamed to
``<key>.npy``. Every read verifies the checksum, so a truncated or overwritten entry is reported, removed and
recomputed instead of giving wrong numbers. Nothing is ever pickled: ``numpy.load(path, mmap_mode="r")`` reads an
entry.

The cache only ever touches files it wrote: a directory becomes a cache when probekit first writes to it and is then
marked by a ``CACHEDIR.TAG`` (https://bford.info/cachedir/); its entries are recognised by their descriptions, and a
``.partial.*`` file is only removed once no process holds its lock (its writer was killed).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from probekit.errors import ProbekitError
from probekit.files import atomic_write_bytes, default_file_mode, describe_os_error, now

#: version of the entry layout; part of every key, so entries of another version are never read
FORMAT = 2
DTYPE = np.dtype("<f4")
CHUNK_BYTES = 16 << 20
TAG_NAME = "CACHEDIR.TAG"
TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
       "# This directory is a probekit activation cache; `probekit cache ls|du|rm --dir DIR` manages it.\n"
       "# For information about cache directory tags see https://bford.info/cachedir/\n")
PARTIAL_PREFIX = ".partial."
#: an unlocked temporary file younger than this is left alone: its writer may still be about to lock or rename it
GRACE_SECONDS = 60.0
_ENTRY_NAME = re.compile(r"^[0-9a-f]{16}\.(npy|json)$")
#: the temporary files of atomic_write_bytes for a description or the tag (alive for microseconds)
_DESCRIPTION_TEMPORARY = re.compile(r"^\.(?:[0-9a-f]{16}\.json|CACHEDIR\.TAG)\..+\.tmp$")
log = logging.getLogger("probekit.cache")


class CacheError(ProbekitError):
    """The cache directory cannot be used as asked (not a cache, not writable, full)."""


@dataclass(frozen=True)
class CacheKey:
    """What one cached activation matrix depends on."""

    model: str
    sites: str
    layer: int

    @property
    def digest(self) -> str:
        return key_digest(asdict(self), FORMAT)


def key_digest(key: dict[str, Any], version: int) -> str:
    """File name stem of an entry with ``key`` written by entry-layout ``version``."""
    return hashlib.sha256(json.dumps([version, key["model"], key["sites"], key["layer"]]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheEntry:
    """One entry found in the directory: its description, data file, size on disk and any damage."""

    digest: str
    data: Path
    size: int
    description: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def labels(self) -> dict[str, str]:
        return self.description.get("labels") or {}

    @property
    def key(self) -> dict[str, Any]:
        return self.description.get("key") or {}


@dataclass(frozen=True)
class Leftover:
    """A file the cache wrote that is not (yet) an entry: a partial file, or a data file without a description."""

    path: Path
    size: int
    state: str  # 'writing' (a live process holds it), 'stale' (its writer died) or 'orphan'

    @property
    def removable(self) -> bool:
        return self.state != "writing"


class ActivationCache:
    """A directory of cached activation matrices."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------------------------------------------------
    # reading and writing entries

    def _paths(self, key: CacheKey) -> tuple[Path, Path]:
        return self.root / f"{key.digest}.npy", self.root / f"{key.digest}.json"

    def has(self, key: CacheKey) -> bool:
        """Whether an entry for ``key`` is present (not verified: :meth:`load` does that)."""
        data, meta = self._paths(key)
        return data.exists() and meta.exists()

    def load(self, key: CacheKey, shape: tuple[int, int]) -> np.ndarray | None:
        """The cached matrix as a read-only memory map, or None on a miss; a damaged entry is removed."""
        data, meta = self._paths(key)
        if not meta.exists():
            return None  # a data file without its description is a miss (and an orphan: see leftovers())
        array, problem = _open_verified(data, meta, key, shape)
        if problem is None:
            return array
        if problem == MISSING_DATA:
            return None  # a writer may be between its description and its rename
        log.warning("activation cache entry %s is damaged (%s); recomputing it", data.name, problem)
        data.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        return None

    def store(
        self,
        keys: dict[int, CacheKey],
        shape: tuple[int, int],
        batches: Iterable[tuple[np.ndarray, dict[int, np.ndarray]]],
        labels: dict[str, str] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Write every layer of ``keys`` from ``batches`` of ``(site_indices, {layer: rows})``; all or nothing.

        Raises :class:`CacheError` when the directory cannot be written (full, read-only, not a directory)."""
        with self._writing():
            self.claim()
            self.remove_leftovers(quiet=False)
            writers: dict[int, _RowWriter] = {}
            try:
                for layer in keys:
                    writers[layer] = _RowWriter(self.root, shape)
                for index, activations in batches:
                    for layer, writer in writers.items():
                        writer.write(index, activations[layer])
                    if on_batch is not None:
                        on_batch(len(index))
                for layer, writer in writers.items():
                    data, meta = self._paths(keys[layer])
                    description = {"format": FORMAT, "key": asdict(keys[layer]), "shape": list(shape),
                                   "dtype": DTYPE.str, "bytes": writer.size, "xxh3_128": writer.checksum(),
                                   "created": now(), "labels": labels or {}}
                    # description first, then the rename: a <key>.npy never exists without its description
                    atomic_write_bytes(meta, json.dumps(description, indent=2).encode())
                    try:
                        writer.finish(data)
                    except BaseException:
                        meta.unlink(missing_ok=True)
                        raise
            finally:
                for writer in writers.values():
                    writer.discard()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise CacheError(describe_os_error(error, f"the activation cache {self.root}")) from error

    def claim(self) -> None:
        """Create the directory if needed and mark it as a probekit cache (``CACHEDIR.TAG``)."""
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(f"the activation cache {self.root} is a file, not a directory; point 'cache:' elsewhere")
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / TAG_NAME).exists():
            atomic_write_bytes(self.root / TAG_NAME, TAG.encode())

    # ----------------------------------------------------------------------------------------------------------
    # inspecting and cleaning

    def is_cache(self) -> bool:
        """Whether the directory was written by probekit (tagged, or holding at least one description)."""
        return (self.root / TAG_NAME).is_file() or bool(self._descriptions())

    def _descriptions(self) -> dict[str, tuple[Path, dict[str, Any] | None]]:
        """``{digest: (description path, parsed description or None when unreadable)}`` of every file named like a
        description. An unreadable one counts only in a tagged directory; a readable one must name its own key."""
        if not self.root.is_dir():
            return {}
        tagged = (self.root / TAG_NAME).is_file()
        found: dict[str, tuple[Path, dict[str, Any] | None]] = {}
        for meta in self.root.glob("*.json"):
            if not _ENTRY_NAME.match(meta.name):
                continue
            try:
                description = json.loads(meta.read_text())
                own = key_digest(description["key"], description["format"]) == meta.stem
            except (OSError, ValueError, KeyError, TypeError):
                description, own = None, tagged
            if own:
                found[meta.stem] = (meta, description)
        return found

    def entries(self) -> list[CacheEntry]:
        """Every entry with its description, size and damage (checksums verified: this reads every file)."""
        found = []
        for digest, (meta, description) in sorted(self._descriptions().items()):
            data = meta.with_suffix(".npy")
            size = data.stat().st_size if data.exists() else 0
            if description is None:
                found.append(CacheEntry(digest, data, size, {}, "unreadable description"))
                continue
            if description.get("format") != FORMAT:
                problem = f"written by another version of probekit (format {description.get('format')}); never read"
            else:
                key = CacheKey(**description["key"])
                problem = _check(data, meta, key, tuple(description.get("shape", ())))
            found.append(CacheEntry(digest, data, size, description, problem))
        return found

    def leftovers(self) -> list[Leftover]:
        """Partial files (being written, or left by a killed run) and data files without a description."""
        if not (self.root / TAG_NAME).is_file():
            return []  # in an untagged directory only described entries are recognisably ours
        described = set(self._descriptions())
        found = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(PARTIAL_PREFIX) and path.is_file():
                # a writer locks its file before giving it any size: empty and young, it may be about to
                live = _held(path) or (_size(path) == 0 and _age(path) < GRACE_SECONDS)
                found.append(Leftover(path, _size(path), "writing" if live else "stale"))
            elif _DESCRIPTION_TEMPORARY.match(path.name):
                found.append(Leftover(path, _size(path), "writing" if _age(path) < GRACE_SECONDS else "stale"))
            elif _ENTRY_NAME.match(path.name) and path.suffix == ".npy" and path.stem not in described:
                found.append(Leftover(path, _size(path), "orphan"))
        return found

    def remove(self, digests: Iterable[str] | None = None) -> int:
        """Delete the given entries (every entry and removable leftover when None); returns bytes freed."""
        descriptions = self._descriptions()
        wanted = set(descriptions) if digests is None else set(digests)
        freed = 0
        for digest in sorted(wanted & set(descriptions)):
            meta = descriptions[digest][0]
            for path in (meta.with_suffix(".npy"), meta):  # data first: never a data file without description
                freed += _unlink(path)
        if digests is None:
            freed += self.remove_leftovers()
        return freed

    def remove_leftovers(self, quiet: bool = True) -> int:
        """Delete partial files whose writer died and data files without a description; returns bytes freed."""
        freed = 0
        removed = [leftover for leftover in self.leftovers() if leftover.removable]
        for leftover in removed:
            freed += _unlink(leftover.path)
        if removed and not quiet:
            log.warning("removed %d file(s) (%s bytes) left in the activation cache %s by a killed or failed run",
                        len(removed), f"{freed:,}", self.root)
        return freed

    def total_bytes(self) -> int:
        """Bytes of every entry (data and description) and leftover; files the cache did not write are not counted."""
        described = sum(_size(meta) + _size(meta.with_suffix(".npy")) for meta, _ in self._descriptions().values())
        return described + sum(leftover.size for leftover in self.leftovers())

    def digests(self) -> set[str]:
        """Ids of every entry (as ``cache ls`` shows them), without verifying any."""
        return set(self._descriptions())

    def entry_count(self) -> int:
        return len(self._descriptions())


MISSING_DATA = "data file missing"


def _check(data: Path, meta: Path, key: CacheKey, shape: tuple[int, ...]) -> str | None:
    """Why the entry at ``data`` / ``meta`` cannot be used for ``key`` and ``shape``, or None when it can."""
    return _open_verified(data, meta, key, shape)[1]


def _open_verified(data: Path, meta: Path, key: CacheKey, shape: tuple[int, ...]) -> tuple[np.ndarray | None,
                                                                                            str | None]:
    """The entry's memory map and None, or None and why it cannot be used. The checksum is computed over the same
    mapping the caller then reads, so verifying costs one pass of hashing (tens of GB/s), not a second read."""
    try:
        description = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None, "missing or unreadable description"
    if description.get("key") != asdict(key) or tuple(description.get("shape", ())) != tuple(shape):
        return None, "description does not match"
    if not data.exists():
        return None, MISSING_DATA
    if data.stat().st_size != description.get("bytes"):
        return None, "file size differs from the description"
    try:
        array = np.load(data, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        return None, f"unreadable: {error}"
    if array.shape != tuple(shape) or array.dtype != DTYPE:
        return None, f"holds {array.dtype} {array.shape}, expected {DTYPE} {tuple(shape)}"
    if array_checksum(array) != description.get("xxh3_128"):
        return None, "checksum mismatch: the file was changed after it was written"
    return array, None


def array_checksum(array: np.ndarray) -> str:
    """xxh3-128 of an entry's values (the ``.npy`` header is checked by shape and dtype)."""
    return xxhash.xxh3_128(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def _held(path: Path) -> bool:
    """Whether a live process holds the lock of a partial file."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)  # closing releases a lock we took
    return False


def _age(path: Path) -> float:
    """Seconds since the file was last written (0 when it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink(path: Path) -> int:
    size = _size(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


class _RowWriter:
    """Writes rows of a [n, d] float32 ``.npy`` file at their final offsets, in any order, into a partial file that
    stays locked (``flock``) until it is renamed or discarded, so a cleaner can tell a live writer from a dead one."""

    def __init__(self, root: Path, shape: tuple[int, int]) -> None:
        # mkstemp opens read-write: the checksum reads the values back through the same descriptor
        self.descriptor, name = tempfile.mkstemp(dir=root, prefix=PARTIAL_PREFIX, suffix=".npy")
        self.path: Path | None = Path(name)
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX)
            os.fchmod(self.descriptor, default_file_mode())
            header = _npy_header(shape)
            self.offset = len(header)
            self.row_bytes = shape[1] * DTYPE.itemsize
            self.size = self.offset + shape[0] * self.row_bytes
            _reserve(self.descriptor, self.size)  # a full disk fails now, before any forward pass
            os.pwrite(self.descriptor, header, 0)
        except BaseException:
            self.discard()
            raise

    def write(self, index: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(index, kind="stable")
        index, rows = index[order], np.ascontiguousarray(rows[order], dtype=DTYPE)
        # one write per run of consecutive site indices
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(index)]):
            if stop > start:
                os.pwrite(self.descriptor, rows[start:stop].tobytes(), self.offset + int(index[start]) * self.row_bytes)

    def checksum(self) -> str:
        """xxh3-128 of the values written (the same as :func:`array_checksum` of the finished entry), read back in
        chunks: a memory map of the whole file would count every page of it in the process's resident memory."""
        os.fsync(self.descriptor)
        hasher = xxhash.xxh3_128()
        position = self.offset
        while position < self.size:
            chunk = os.pread(self.descriptor, min(CHUNK_BYTES, self.size - position), position)
            hasher.update(chunk)
            position += len(chunk)
        return hasher.hexdigest()

    def finish(self, destination: Path) -> None:
        assert self.path is not None
        os.replace(self.path, destination)
        self.path = None
        self._close()

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)  # unlink while still locked: no cleaner can mistake it for stale
            self.path = None
        self._close()

    def _close(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1


def _npy_header(shape: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": DTYPE.str, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


def _reserve(descriptor: int, size: int) -> None:
    """Allocate ``size`` bytes on disk (or at least set the length where the filesystem cannot preallocate)."""
    try:
        os.posix_fallocate(descriptor, 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(descriptor, size)
