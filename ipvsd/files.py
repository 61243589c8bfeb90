"""Writing a file so that readers never see half of it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text`: a temporary file beside it, fsync, rename, fsync the directory.

    A reader (a daemon reloading its config, a restart reading its state) sees
    the old file or the new one, never a torn one, even across a crash.

    Args:
        path: the file to write.
        text: its new contents (UTF-8).
        mode: permission bits of the new file; None: those of the file it
            replaces, else 0644.
    """
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    import tempfile  # here: random and hashlib come with it, a cost no start needs

    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
