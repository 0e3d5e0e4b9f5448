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
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                               dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a plain file's mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
