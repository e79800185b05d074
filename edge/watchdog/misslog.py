"""The miss log (JSON lines with size-based rotation) and the once-a-second stderr summary.

The watchdog must never wait for a disk, and a failing disk must never stop the pipeline:
``MissLog.write`` only puts the record on a bounded queue (a full queue counts the record as
lost), and a background thread serialises and appends. Every ``OSError`` there (ENOSPC, EROFS,
EACCES, a deleted directory) is caught: the records are counted as ``lost``, the failure is
logged once and then at most once per ``error_log_interval_s``, and the file is reopened (its
directory recreated) on the next record after ``retry_s``, so logging resumes by itself
when the disk comes back.

Rotation follows ``logging.handlers.RotatingFileHandler``: when the next line would take the
file past ``max_bytes``, ``path.N-1`` becomes ``path.N`` ... ``path`` becomes ``path.1``;
``backups=0`` truncates instead. The path ``-`` writes to stdout, each line prefixed with
:data:`JOURNAL_PREFIX`, which is how a systemd service puts its records in the journal.

Every file written is ours: the log is opened with ``O_NOFOLLOW`` (a symbolic link is refused,
never followed into someone else's file), a non-empty file is adopted only when its first line
is a miss-log record, and the file made after a rotation is created with ``O_EXCL``. One
process writes a log: an exclusive ``flock`` on ``PATH.lock`` beside it is held for the life of
the :class:`MissLog` (two writers rotating one file lose records). By default the constructor
opens the file, so each of these is a :class:`~edge.errors.MissLogError` at start; a pipe or
a character device (``/dev/null``) is opened by the writer thread, never locked or rotated.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import queue
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, cast

from edge.clock import MONOTONIC, Clock
from edge.errors import MissLogError
from edge.watchdog.record import MissRecord

log = logging.getLogger(__name__)

#: a journal MESSAGE (or stdout line) that starts with this carries one JSON record
JOURNAL_PREFIX = "edge-miss "

_STOP = object()
_BATCH = 256
#: how much of an existing file is read to find its first line
_FIRST_LINE_MAX = 64 * 1024
#: how every record line starts (``to_json`` puts ``type`` first, without spaces)
_RECORD_HEADS = (b'{"type":"miss"', b'{"type":"run"')


class JsonRecord(Protocol):
    def to_json(self) -> str: ...


class MissLog:
    """Append JSON records to ``path`` from a background thread; never raises on I/O."""

    def __init__(
        self,
        path: str | Path,
        max_bytes: int = 5 * 1024 * 1024,
        backups: int = 3,
        *,
        queue_size: int = 1024,
        clock: Clock = MONOTONIC,
        retry_s: float = 1.0,
        error_log_interval_s: float = 60.0,
        open_now: bool = True,
    ) -> None:
        """``open_now``: open (and lock) the file here, raising :class:`MissLogError` when it
        cannot be opened or is not ours; False leaves even the first open to the writer thread,
        where every failure is counted and retried like a disk that fails later."""
        if max_bytes < 1 or backups < 0 or queue_size < 1:
            raise ValueError(
                f"expected max_bytes >= 1, backups >= 0, queue_size >= 1; got {max_bytes}, "
                f"{backups}, {queue_size}"
            )
        self.path: Path | None = None if str(path) == "-" else Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self._clock = clock
        self._retry_ns = int(retry_s * 1e9)
        self._error_log_ns = int(error_log_interval_s * 1e9)
        self._q: queue.Queue[object] = queue.Queue(queue_size)
        self._cond = threading.Condition()
        self._pending = 0
        self._closing = False
        self._counts = {"written": 0, "lost": 0, "write_errors": 0, "rotations": 0}
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._file_id: tuple[int, int] | None = None
        self._size = 0
        self._broken = False
        self._lost_while_broken = 0
        self._next_retry_ns = 0
        self._last_error_log_ns: int | None = None
        if open_now and self.path is not None and not _is_stream(self.path):
            self._open_at_start()
        self._thread = threading.Thread(target=self._run, name="miss-log", daemon=True)
        self._thread.start()

    # -- the caller's side: never blocks, never raises -------------------------------------

    def write(self, record: JsonRecord | str) -> bool:
        """Queue one record (or a ready JSON line); False when it had to be counted lost."""
        with self._cond:
            if self._closing:
                self._counts["lost"] += 1
                return False
            self._pending += 1
        try:
            self._q.put_nowait(record)
        except queue.Full:
            self._done(0, lost=1)
            return False
        return True

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait until every queued record is written or counted lost; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self, timeout_s: float = 2.0) -> bool:
        """Flush within ``timeout_s`` and stop the writer; True when nothing was left behind."""
        with self._cond:
            self._closing = True
        try:
            self._q.put_nowait(_STOP)
        except queue.Full:
            pass  # the writer drains the queue and then sees _closing
        self._thread.join(timeout_s)
        with self._cond:
            return not self._thread.is_alive() and self._pending == 0

    def __enter__(self) -> MissLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def written(self) -> int:
        return self.stats()["written"]

    @property
    def lost(self) -> int:
        return self.stats()["lost"]

    @property
    def write_errors(self) -> int:
        return self.stats()["write_errors"]

    def stats(self) -> dict[str, int]:
        """``written``, ``lost``, ``write_errors``, ``rotations`` and ``queued``."""
        with self._cond:
            return {**self._counts, "queued": self._pending}

    # -- the writer thread ------------------------------------------------------------------

    def _done(self, written: int, lost: int = 0) -> None:
        with self._cond:
            self._counts["written"] += written
            self._counts["lost"] += lost
            self._pending -= written + lost
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                stop = any(item is _STOP for item in batch)
                lines = [item for item in batch if item is not _STOP]
                if lines:
                    written = self._write_batch_guarded(lines)
                    self._done(written, lost=len(lines) - written)
                if stop and self._q.empty():
                    return
        finally:
            self._close_fd()
            self._unlock()

    def _write_batch_guarded(self, lines: list[object]) -> int:
        try:
            return self._write_batch(lines)
        except Exception:  # a bug here must not silence the log for the rest of the run
            log.exception("miss log: unexpected error; %d records lost", len(lines))
            self._close_fd()
            return 0

    def _next_batch(self) -> list[object] | None:
        """Block for the first item (waking to notice close), then take what else is queued."""
        while True:
            try:
                first = self._q.get(timeout=0.5)
                break
            except queue.Empty:
                with self._cond:
                    if self._closing:
                        return None
        batch = [first]
        while len(batch) < _BATCH:
            try:
                batch.append(self._q.get_nowait())
            except queue.Empty:
                break
        return batch

    def _encode(self, item: object) -> bytes | None:
        try:
            line = item if isinstance(item, str) else cast(JsonRecord, item).to_json()
        except (ValueError, TypeError, AttributeError) as e:
            log.error("miss log: cannot serialise %r: %s (record lost)", item, e)
            return None
        prefix = JOURNAL_PREFIX if self.path is None else ""
        return f"{prefix}{line}\n".encode()

    def _write_batch(self, items: list[object]) -> int:
        """Write what can be written; return how many records made it to the file."""
        encoded = [self._encode(item) for item in items]
        data = [b for b in encoded if b is not None]
        now = self._clock.now_ns()
        if self._broken and now < self._next_retry_ns:
            self._lost_while_broken += len(items)
            return 0
        written = 0
        try:
            self._ensure_open()
            for chunk in data:
                self._append(chunk)
                written += 1
        except OSError as e:
            self._fail(e, now, len(items) - written)
            return written
        if self._broken:
            self._recovered()
        return written

    def _ensure_open(self) -> None:
        if self.path is None:
            self._fd = 1
            return
        if self._fd is not None and not self._same_file():
            self._close_fd()
        if self._fd is None:
            self._open()

    def _same_file(self) -> bool:
        """False when the log was deleted, or renamed by logrotate, under the open descriptor."""
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._file_id

    def _open_at_start(self) -> None:
        assert self.path is not None
        try:
            self._open()
        except MissLogError:
            self._unlock()
            raise
        except OSError as e:
            self._close_fd()
            self._unlock()
            raise MissLogError(
                f"miss log {self.path} cannot be opened ({_reason(e)}): {_fix(e)}"
            ) from None

    def _open(self, fresh: bool = False) -> None:
        """Open (creating) the log; ``fresh``: it must not exist (just rotated away)."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if _is_stream(self.path):  # a pipe or a device: append, nothing to lock or rotate
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
            st = os.fstat(fd)
            self._fd, self._file_id, self._size = fd, (st.st_dev, st.st_ino), 0
            return
        if self._lock_fd is None:
            self._lock()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = _open_nofollow(self.path, flags | (os.O_EXCL if fresh else 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise MissLogError(
                    f"miss log {self.path} is not a regular file: give a file path for "
                    "--miss-log (or - for stdout)"
                )
            if st.st_size:
                _check_ours(self.path, fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._file_id, self._size = fd, (st.st_dev, st.st_ino), st.st_size
        # a write cut short by a full disk leaves half a line: end it, so the next record
        # starts on a line of its own and readers count one bad line, not two
        if self._size and os.pread(fd, 1, self._size - 1) != b"\n":
            self._write_all(b"\n")

    def _lock(self) -> None:
        """Hold ``PATH.lock`` exclusively: one writer per log, a clear error for a second."""
        assert self.path is not None
        lock_path = self.path.with_name(f"{self.path.name}.lock")
        fd = _open_nofollow(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise MissLogError(
                f"miss log {self.path} is in use by another process (pid {holder}, holding "
                f"{lock_path}): one process writes a log; give this run its own --miss-log "
                "path, or stop the other one"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        held = os.pread(fd, 64, 0)
        if held.strip() and not held.strip().isdigit():  # someone's file by that name
            os.close(fd)
            raise MissLogError(
                f"miss log {self.path}: {lock_path} is not its lock file (it holds something "
                "other than a pid): refused, so it is never overwritten; move it away or give "
                "another --miss-log path"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock; the file stays (removing it would race)

    def _append(self, chunk: bytes) -> None:
        if self.path is not None and self._size and self._size + len(chunk) > self.max_bytes:
            self._rotate()
        self._write_all(chunk)

    def _write_all(self, chunk: bytes) -> None:
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    def _rotate(self) -> None:
        # only the file this process opened and checked is truncated or renamed (the
        # descriptor is ours, and _same_file ran before this batch); renaming moves a link
        # itself, never what it points at; the new file must be new (O_EXCL)
        assert self.path is not None and self._fd is not None
        if self.backups == 0:
            os.ftruncate(self._fd, 0)
            self._size = 0
        else:
            self._close_fd()
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if os.path.lexists(older):
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._open(fresh=True)
        with self._cond:
            self._counts["rotations"] += 1

    def _close_fd(self) -> None:
        fd, self._fd, self._file_id = self._fd, None, None
        if fd is not None and fd != 1:
            try:
                os.close(fd)
            except OSError:
                pass  # closing a descriptor on a dead disk: nothing left to save

    def _fail(self, err: OSError, now: int, lost: int) -> None:
        with self._cond:
            self._counts["write_errors"] += 1
            total_lost = self._counts["lost"] + lost
        self._close_fd()
        self._broken = True
        self._lost_while_broken += lost
        self._next_retry_ns = now + self._retry_ns
        last = self._last_error_log_ns
        if last is None or now - last >= self._error_log_ns:
            self._last_error_log_ns = now
            if isinstance(err, MissLogError):  # the file is not ours (any more)
                what = f"{err}; {total_lost} miss records lost so far. The pipeline goes on"
            else:
                what = (
                    f"miss log {self.path or 'stdout'}: cannot write ({_reason(err)}); "
                    f"{total_lost} miss records lost so far. The pipeline goes on; "
                    f"{_fix(err)}, and logging resumes by itself"
                )
            log.error("%s", what)

    def _recovered(self) -> None:
        log.warning(
            "miss log %s: writable again; %d miss records were lost while it was not",
            self.path or "stdout",
            self._lost_while_broken,
        )
        self._broken = False
        self._lost_while_broken = 0


def _is_stream(path: Path) -> bool:
    """A pipe or a character device (``/dev/null``) already at ``path`` (not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _open_nofollow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW on a symbolic link
            raise MissLogError(
                f"miss log {path} is a symbolic link: refused (it could point at anyone's "
                "file); give the real path"
            ) from None
        raise


def _check_ours(path: Path, fd: int) -> None:
    """Refuse a non-empty file whose first line is not a miss-log record."""
    head = os.pread(fd, _FIRST_LINE_MAX, 0)
    line, newline, _ = head.partition(b"\n")
    if not newline:  # one line, maybe cut short by a full disk: judge by how it starts
        ours = line.startswith(_RECORD_HEADS)
    else:
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            data = None
        ours = isinstance(data, dict) and data.get("type") in ("miss", "run")
    if not ours:
        raise MissLogError(
            f"miss log {path} is an existing file that is not a miss log (its first line is "
            "not a miss or run record): refused, so it is never overwritten; give another "
            "--miss-log path, or move the file away"
        )


def _reason(err: OSError) -> str:
    if err.errno == errno.EEXIST:  # from mkdir: a file where a directory must be
        return "a part of its path is a file, not a directory"
    return err.strerror or str(err)


def _fix(err: OSError) -> str:
    """What to do about a miss log that cannot be written, by the kind of failure."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free space on its disk"
    if err.errno == errno.EROFS:
        return "its file system is read-only: remount it read-write or give another path"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "fix the permissions of the file and its directory, or give another path"
    if err.errno == errno.EISDIR:
        return "give a file path, not a directory"
    if err.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG):
        return "give another path"
    return "fix the disk or give another path"


class MissSummary:
    """Condense misses for stderr: at most one log line per ``interval_s``, never one per frame.

    The caller drives it: ``add`` each record as it is made, ``tick`` from any regular loop
    (the watchdog's); ``flush`` at exit reports what is left.
    """

    def __init__(
        self,
        clock: Clock = MONOTONIC,
        interval_s: float = 1.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._clock = clock
        self._interval_ns = int(interval_s * 1e9)
        self._log = logger or log
        self._lock = threading.Lock()
        self._by_cause: dict[str, int] = {}
        self._worst_ms = 0.0
        self._start_ns: int | None = None
        self.total = 0

    def add(self, record: MissRecord, now_ns: int | None = None) -> None:
        now = self._clock.now_ns() if now_ns is None else now_ns
        with self._lock:
            if self._start_ns is None:
                self._start_ns = now
            self._by_cause[record.cause] = self._by_cause.get(record.cause, 0) + 1
            self._worst_ms = max(self._worst_ms, record.over_ms)
            self.total += 1

    def tick(self, now_ns: int | None = None) -> str | None:
        """Log and return the summary line when a full interval has passed since the first
        miss in it; None otherwise."""
        now = self._clock.now_ns() if now_ns is None else now_ns
        with self._lock:
            if self._start_ns is None or now - self._start_ns < self._interval_ns:
                return None
            return self._emit(now)

    def flush(self, now_ns: int | None = None) -> str | None:
        """Log whatever is pending, however short the interval (for shutdown)."""
        now = self._clock.now_ns() if now_ns is None else now_ns
        with self._lock:
            return None if self._start_ns is None else self._emit(now)

    def _emit(self, now: int) -> str:
        assert self._start_ns is not None
        msg = format_summary(self._by_cause, self._worst_ms, (now - self._start_ns) / 1e9)
        self._by_cause, self._worst_ms, self._start_ns = {}, 0.0, None
        self._log.warning("%s", msg)
        return msg


def format_summary(by_cause: Mapping[str, int], worst_over_ms: float, elapsed_s: float) -> str:
    """``12 deadline misses in the last 1.0 s: infer 10, queue 2; worst +18.3 ms``."""
    n = sum(by_cause.values())
    causes = sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))
    what = ", ".join(f"{c} {k}" for c, k in causes)
    noun = "miss" if n == 1 else "misses"
    head = f"{n} deadline {noun} in the last {elapsed_s:.1f} s"
    return f"{head}: {what}; worst +{worst_over_ms:.1f} ms"
