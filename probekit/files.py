"""Writing files so that readers never see half of one: atomic replacement, shared permissions, timestamps."""

from __future__ import annotations

import errno
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a partial one.

    The temporary file lives next to ``path``, hidden as ``.<name>.<random>.tmp``, and is removed if anything
    fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), default_file_mode())  # mkstemp makes 0600; results are meant to be shared
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """0666 less the process umask: the mode ``open()`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def now() -> str:
    """The current UTC time, ISO 8601 to the millisecond (run times in run.json time benchmarks)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def describe_os_error(error: OSError, what: str) -> str:
    """One line for an operating-system error while writing ``what``, with the fix when there is an obvious one."""
    where = f" ({error.filename})" if error.filename and str(error.filename) not in what else ""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        return f"no space left on the device of {what}{where}; free some space and run the same command again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {what}{where}: {reason}; choose a writable location"
    return f"cannot write {what}{where}: {reason}"
