"""Atomic file writes: a file is either its old content or its complete new content, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)  # mkstemp makes the file private; give it normal permissions
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def search_path(folder: str) -> list[Path]:
    """Where recipes in ``folder`` (corpora, tokenizers, configs) are looked up, in order:
    ./folder in the working directory, then the folder of this source checkout."""
    found = []
    for directory in (Path.cwd() / folder, Path(__file__).resolve().parent.parent / folder):
        if directory.is_dir() and directory.resolve() not in [d.resolve() for d in found]:
            found.append(directory)
    return found
