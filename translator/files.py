"""Atomic file writes: a file is either its old content or its complete new content, never half."""

from __future__ import annotations

import functools
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


def replace_between(path: str | Path, start: str, end: str, text: str, error=ValueError) -> None:
    """Replace what lies between the marker lines ``start`` and ``end`` of a file (README.md's
    generated tables) with ``text``, atomically; ``error`` if the markers are not there once each."""
    path = Path(path)
    content = path.read_text(encoding="utf-8")
    if content.count(start) != 1 or content.count(end) != 1 or content.index(start) > content.index(end):
        raise error(f"{path}: expected one line '{start}' and, after it, one line '{end}'; the generated "
                    f"table goes between them")
    head, rest = content.split(start, 1)
    atomic_write_text(path, f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}")


def search_path(folder: str) -> list[Path]:
    """Where recipes in ``folder`` (corpora, tokenizers, configs) are looked up, in order:
    ./folder in the working directory, then the folder of this source checkout."""
    found = []
    for directory in (Path.cwd() / folder, Path(__file__).resolve().parent.parent / folder):
        if directory.is_dir() and directory.resolve() not in [d.resolve() for d in found]:
            found.append(directory)
    return found


# ----------------------------------------------------------------------------- YAML

class DuplicateKeyError(ValueError):
    """A YAML mapping names the same key twice (YAML's own loaders keep the last one silently)."""


@functools.cache
def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` (no arbitrary objects) that refuses a key given twice in one mapping."""

        def construct_mapping(self, node, deep=False):
            first_line = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, (str, int, float, bool, type(None))):
                    continue  # an unusual key (a list, a mapping): SafeLoader says what is wrong with it
                if key in first_line:
                    raise DuplicateKeyError(
                        f"key '{key}' is given twice, on line {first_line[key]} and on line {line}; "
                        f"keep one of them")
                first_line[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | Path, error=ValueError):
    """The content of a YAML file, read safely (no arbitrary objects). A syntax error or a key
    given twice raises ``error`` with a message that names the file and the line(s)."""
    import yaml

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_unique_key_loader())  # a SafeLoader
    except DuplicateKeyError as duplicate:
        raise error(f"{path}: {duplicate}") from None
    except yaml.YAMLError as syntax:
        raise error(f"{path}: not valid YAML: {syntax}") from None
    except UnicodeDecodeError as undecodable:
        raise error(f"{path}: not UTF-8 text (byte {undecodable.start + 1}); save it as UTF-8") from None
