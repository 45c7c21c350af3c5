"""One writer per cascade model folder, and a folder replaced whole.

A manual ``tactful train`` (or the ``tactful.train`` command) and the server's automatic
adaptation (:mod:`tactful.cascade.adapt`) never write the same folder at once, and a reader
never sees a half-written one (:func:`replace_folder`).

:func:`folder_lock` takes an exclusive lock on a lock file next to the folder
(``.NAME.lock``): ``flock`` on POSIX, ``msvcrt.locking`` on Windows. Both are held per open
file, so two threads of one server exclude each other as two processes do, and the operating
system drops the lock when its holder dies (no stale lock files to clean up).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tactful.cascade.model import CdhfError

#: How long a manual training waits for another writer of the same folder (an adaptation
#: takes seconds; a manual training minutes).
MANUAL_WAIT_S = 30.0


class FolderBusy(CdhfError):
    """Another training or adaptation is writing the model folder."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@contextmanager
def folder_lock(out: str | Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the model folder ``out`` for writing; waits up to ``wait_s`` seconds for another
    writer, then raises :class:`FolderBusy` (nothing written)."""
    out = Path(out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CdhfError(f"{out}: cannot lock the model folder ({exc})") from exc
    try:
        deadline = time.monotonic() + wait_s
        # A polling loop on purpose: flock has no timeout, and a blocking flock in a thread
        # could not be given up after wait_s. A training holds the lock for tens of seconds.
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise FolderBusy(
                    f"{out}: another training or adaptation is writing this model folder; "
                    "try again when it is done"
                )
            time.sleep(0.1)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def replace_folder(out: Path, fill: Callable[[Path], None]) -> None:
    """Write a new folder next to ``out`` with ``fill`` and swap it in: a failure keeps the
    previous folder. The caller holds :func:`folder_lock`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        fill(tmp)
        old = out.with_name(f".{out.name}-old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
