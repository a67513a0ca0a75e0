"""Writing files so that a kill mid-write never leaves a truncated file under the final name.

Everything is written to a hidden temporary file in the same folder (same filesystem, so the rename is atomic), flushed
to disk, then renamed over the final name; on any error the temporary file is removed and the old file, if any, stays
intact.
"""
from __future__ import annotations

import os, tempfile
from contextlib import contextmanager
from pathlib import Path


def _tmp_beside(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")


def _discard(tmp: str):
    try: os.unlink(tmp)
    except FileNotFoundError: pass


@contextmanager
def atomic_open(path: Path, mode: str = "w"):
    "Yield an open temporary file beside `path`; only a fully written, fsynced file replaces `path`."
    path = Path(path)
    fd, tmp = _tmp_beside(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600 files; artefacts should stay readable
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path` for writers that take a file name (`learn.export`); renamed onto `path` on
    success."""
    path = Path(path)
    fd, tmp = _tmp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def atomic_write_text(path: Path,  # final file name
                      text: str,   # full UTF-8 content
                      ) -> None:
    "Readers see either the old or the new file, never a truncated one."
    with atomic_open(path, "w") as f: f.write(text)
