"""One writer per journal: an OS advisory lock on the journal file, held for the whole run.

Two runs writing one journal at once would each skip what the other recorded and redo the rest
(about twice the duplicates, or "database is locked"). So the run that uses a journal takes an
exclusive ``flock`` on the journal file itself, from the moment its Plumber is built (before the
file is read: what it reads cannot change under it) until its run has ended and the file is
closed. A second run, in another process or in this one, is refused with a `JournalError`
naming the file and, where the system says (Linux's /proc/locks), the pid of the holder.

The OS drops the lock when its process dies, however it dies: a run killed with SIGKILL leaves
no stale lock, so its resume starts at once. Nothing is written for it (no pid file, no extra
file beside the journal), and the lock is independent of SQLite's own locks on the file, which
are POSIX record locks. A child forked while the lock is held does not keep it: its copy of the
descriptor is closed in the child, so the lock lives exactly as long as the run's process holds it.
A lock on a network file system may not be seen by other machines, as SQLite's own locks may not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref

from ..errors import JournalError

__all__ = ["JournalLock"]

_held: dict[tuple[int, int], int] = {}
"""The locks this process holds: (device, inode) of the file -> the descriptor that holds it."""


def _close_in_child() -> None:
    """After a fork, the child lets go of its copies: the lock stays with the run's process alone."""
    for fd in _held.values():
        with contextlib.suppress(OSError):  # closed by the child's own code already
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class JournalLock:
    """The exclusive lock of one journal file, held by the one run that writes it."""

    def __init__(self, path: str, fd: int, inode: tuple[int, int]) -> None:
        self.path = path
        self._inode = inode
        self._release = weakref.finalize(self, _unlock, fd, inode)

    @classmethod
    def acquire(cls, path: str) -> JournalLock:
        """Lock the journal at `path`, making an empty file (a new journal) if there is none yet.

        Raises JournalError when another run holds it, or when the file cannot be opened. Never
        waits: a held lock is refused at once. If the lock is dropped without release() (the
        object is collected), it is released then.
        """
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
            except OSError as exc:
                raise JournalError(f"journal {path}: cannot open it: {exc.strerror or exc}") from None
        except OSError as exc:
            raise JournalError(f"journal {path}: cannot open it: {exc.strerror or exc}") from None
        try:
            status = os.fstat(fd)
            inode = (status.st_dev, status.st_ino)
            if inode in _held:
                raise JournalError(
                    f"{path}: another Plumber of this process is running this journal; wait for its run to end"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(status)
                holder = f" (pid {pid})" if pid else ""
                raise JournalError(
                    f"{path}: another process is running this journal{holder}; "
                    "wait for it to end, or give another journal file"
                ) from None
            except OSError as exc:
                raise JournalError(f"journal {path}: cannot lock it: {exc.strerror or exc}") from None
        except BaseException:
            os.close(fd)
            raise
        _held[inode] = fd
        return cls(path, fd, inode)

    def release(self) -> None:
        """Let another run have the journal (once the file is closed). Calling it again does nothing."""
        self._release()


def _unlock(fd: int, inode: tuple[int, int]) -> None:
    if _held.get(inode) == fd:
        del _held[inode]
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)  # for any copy of the descriptor a fork made without our hook
        finally:
            os.close(fd)


def _holder(status: os.stat_result) -> int | None:
    """The pid holding a flock on the file of `status`, where the system tells (Linux's /proc/locks)."""
    where = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                # '1: FLOCK  ADVISORY  WRITE 2870 fe:00:2146597 0 EOF'; a waiter's line has '->' after the number
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
                    return int(fields[4])
    except OSError:
        pass
    return None
