"""Output folders: checked before any work starts, and written by one run at a time.

:func:`check_output_folder` is the pre-flight check of every command that writes (a folder that cannot be created
or written, or that another run holds, is reported before data is loaded or a model trained);
:func:`output_folder_lock` is held by a training run for as long as it writes. The lock is ``<folder>/_brainmass.lock``
holding the owner's PID, locked with ``fcntl.flock``: the kernel drops the lock when its process dies, so a lock file
left by a killed run (a stale lock) never blocks the next one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the folder is still checked for being writable
    fcntl = None

__all__ = ["LOCK_NAME", "OutputFolderError", "check_output_folder", "output_folder_lock"]

# the leading "_": the Trainer's Hub pushes of the output folder skip "_*" files (`ignore_patterns=["_*", ...]`), so a
# run that pushes while it holds the lock never uploads it (tests/test_hub.py checks every pushed revision)
LOCK_NAME = "_brainmass.lock"


class OutputFolderError(OSError):
    """An output folder that cannot be used: not creatable, not writable, or in use by another run."""


def _make_writable_folder(path: Path, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".brainmass_write_test_"):
            pass
    except OSError as error:
        raise OutputFolderError(
            f"{flag} {str(path)!r} cannot be written ({type(error).__name__}: {error.strerror or error}); choose a "
            "folder you can write to (and that is not a file), or fix its permissions."
        ) from error


def _main_process() -> bool:
    """Rank 0 of a distributed run (``RANK``, set by ``torchrun``), or a single process: the one that locks."""
    return int(os.environ.get("RANK", "0")) == 0


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _busy_error(lock: Path, flag: str) -> OutputFolderError:
    try:
        owner = lock.read_text().strip() or "unknown"
    except OSError:
        owner = "unknown"
    return OutputFolderError(
        f"{flag} {str(lock.parent)!r} is in use by another brainmass run (PID {owner}, lock file {lock.name}); two "
        "runs in one folder overwrite each other's checkpoints. Wait for that run to end, or choose another folder."
    )


def check_output_folder(path: str | os.PathLike, flag: str = "--output_dir") -> Path:
    """Create ``path`` if needed and check, before any work, that it can be written and that no other run holds
    its lock (checked by the main process only: the other ranks of a distributed run share its lock). ``flag`` names
    the option in the message. Returns the folder.

    Raises:
        OutputFolderError: naming the folder and what to do.
    """
    path = Path(path)
    _make_writable_folder(path, flag)
    lock = path / LOCK_NAME
    if fcntl is not None and _main_process() and lock.exists():
        with contextlib.suppress(FileNotFoundError), open(lock) as handle:
            if not _try_lock(handle.fileno()):
                raise _busy_error(lock, flag)
    return path


@contextlib.contextmanager
def output_folder_lock(path: str | os.PathLike, flag: str = "--output_dir") -> Iterator[Path]:
    """Hold ``<path>/_brainmass.lock`` while a run writes into ``path``; a second run fails at once.

    Only the main process of a distributed run (``RANK`` 0 or unset) takes the lock: the others write into the
    same folder as part of the same run. The lock file is removed on exit.

    Raises:
        OutputFolderError: the folder cannot be written, or another live run holds the lock (its PID is named).
    """
    if fcntl is None or not _main_process():  # the main process holds the lock for all ranks
        yield Path(path)
        return
    path = check_output_folder(path, flag)
    lock = path / LOCK_NAME
    while True:
        handle = open(lock, "a+")
        if not _try_lock(handle.fileno()):
            handle.close()
            raise _busy_error(lock, flag)
        # the file may have been removed by the run that held it between our open and our lock: lock the one on disk
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        handle.close()
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        handle.close()
