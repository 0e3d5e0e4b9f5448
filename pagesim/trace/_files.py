# SPDX-License-Identifier: GPL-2.0-only
"""Reading logs that may be gzipped, and writing outputs whole or not at all."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path


def read_text(path: str | Path) -> str:
    """The file's text, gunzipped when it starts with the gzip magic (real captures are
    kept as ``.txt.gz``; the name is not trusted, the content is)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not text (byte {e.start} is not UTF-8)") from e


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) whole or not at all: see
    :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, blob: bytes) -> None:
    """Write ``blob`` to a temporary file beside ``path`` and rename it over ``path``, so
    a reader (or a crash) never sees half an output: every file pagesim writes goes
    through here."""
    given = Path(path)
    if given.is_dir():
        raise OSError(f"{path}: is a directory, not a file")
    if given.exists() and not given.is_file():
        # /dev/stdout, a pipe: renaming over it would replace the device itself
        try:
            with open(given, "wb") as f:
                f.write(blob)
        except OSError as e:
            raise OSError(f"{path}: cannot write: {e.strerror or e}") from None
        return
    target = Path(os.path.realpath(path))  # a symlink stays one: write where it points
    if not target.parent.is_dir():
        what = "is not a directory" if target.parent.exists() else "does not exist"
        raise OSError(f"{path}: cannot write: {target.parent} {what}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent or ".")
    except OSError as e:  # the error names the temporary file: name the output instead
        raise OSError(f"{path}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a plain file's mode
        os.replace(tmp, target)
    except OSError as e:  # a full disk, say: nothing is left behind
        Path(tmp).unlink(missing_ok=True)
        raise OSError(f"{path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_dir(path: str | Path) -> Path:
    """Create the output directory ``path`` (and its parents) unless it exists; an
    error names it and says why (not the ``FileNotFoundError`` of a parent)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OSError(f"{path}: not a directory") from None
    except OSError as e:
        raise OSError(f"{path}: cannot create the directory: {e.strerror or e}") from None
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
