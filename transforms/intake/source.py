"""One landing file, opened once: checked, fingerprinted and read through the same descriptor.

Opening by path twice (once to hash, once to read) lets a file be swapped in between, and lets a
symlink, a named pipe or a directory reach a reader that hangs or crashes on it. Here the path is
resolved once, must stay inside `landing/` when a landing root is given, and is opened without
following a final link and without blocking; `fstat` on that descriptor must show a regular
file. The fingerprint is taken from the descriptor, and readers read the same descriptor through
`/proc/self/fd/N`: a path with no pattern characters in it, so no reader can take a name with
`*`, `?` or `[...]` for a glob.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from transforms.intake.common import reject
from transforms.intake.names import printable

BLOCK = 1 << 20
# Linux names a process's open descriptors here; macOS and the BSDs under /dev/fd.
_PROC_FD = Path("/proc/self/fd") if Path("/proc/self/fd").is_dir() else Path("/dev/fd")


def descriptor_path(fd: int) -> str:
    """A path that reads the open descriptor `fd` (for readers that take only a path)."""
    return str(_PROC_FD / str(fd))


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


@dataclass
class Source:
    """An open landing file. `fingerprint` is the sha256 of the bytes readers get."""

    path: Path
    fd: int
    size: int
    mtime: float
    fingerprint: str = ""
    eol: bytes = b"\n"
    # First physical line longer than the limit given to `open_source` (1-based), if any.
    long_line: int | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        """The file name as shown anywhere: control characters escaped."""
        return printable(self.path.name)

    @property
    def reader_path(self) -> str:
        """A path that reads this descriptor; readers never see the landing name."""
        return descriptor_path(self.fd)

    def read_at(self, offset: int, length: int) -> bytes:
        chunks, end = [], offset + length
        while offset < end:
            block = os.pread(self.fd, min(BLOCK * 16, end - offset), offset)
            if not block:
                break
            chunks.append(block)
            offset += len(block)
        return b"".join(chunks)

    def read_bytes(self) -> bytes:
        return self.read_at(0, self.size)

    def blocks(self, size: int = BLOCK):
        """The file's bytes, `size` at a time."""
        for offset in range(0, self.size, size):
            yield self.read_at(offset, size)

    def head(self, length: int = 1 << 16) -> bytes:
        return self.read_at(0, min(length, self.size))

    def tail(self, length: int = 1 << 16) -> bytes:
        start = max(0, self.size - length)
        return self.read_at(start, self.size - start)

    def extract_date(self, from_name) -> date:
        found = from_name(self.path.name)
        return found or datetime.fromtimestamp(self.mtime).date()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_source(
    path: Path, *, landing: Path | None = None, max_line_bytes: int | None = None
) -> Source:
    """Open `path` for reading as one delivery, or raise DeliveryRejected naming why not.

    With `landing`, the resolved file must lie inside it. With `max_line_bytes`, physical lines
    are measured while fingerprinting (the first too long is recorded in `long_line`)."""
    path = Path(path)
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise reject(path.name, "not_a_file", "the file (or its link's target) does not exist") \
            from None
    except (OSError, RuntimeError) as exc:
        raise reject(path.name, "unreadable", f"cannot resolve its path ({type(exc).__name__})") \
            from None
    if landing is not None and not resolved.is_relative_to(Path(landing).resolve()):
        raise reject(path.name, "outside_landing", "a link to a file outside landing/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(resolved, flags)
    except PermissionError:
        raise reject(path.name, "unreadable", "permission denied") from None
    except OSError as exc:
        raise reject(path.name, "unreadable", f"cannot be opened ({type(exc).__name__})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise reject(path.name, "not_a_file", f"{file_kind(info.st_mode)}, not a regular file")
    return open_descriptor(resolved, fd, info.st_mtime, max_line_bytes=max_line_bytes)


def open_descriptor(
    path: Path, fd: int, mtime: float, *, max_line_bytes: int | None = None
) -> Source:
    """A Source over an open regular file `fd` (closed with it), shown under `path`'s name:
    fingerprinted, its lines measured if asked."""
    source = Source(Path(path), fd, os.fstat(fd).st_size, mtime)
    try:
        _fingerprint(source, max_line_bytes)
    except OSError as exc:
        source.close()
        raise reject(source.name, "unreadable", f"read failed ({type(exc).__name__})") \
            from None
    return source


def _fingerprint(source: Source, max_line_bytes: int | None) -> None:
    """Hash the descriptor's bytes; measure lines on the way if asked.

    Blocks are no longer than the limit, so a line wholly inside one block is within it: only
    the line running across block ends (`carry`) needs measuring, with two `find`s per block.
    Where a line is too long, its number is counted afterwards, up to its start only."""
    head = source.head()
    if b"\n" not in head and b"\r" in head:
        source.eol = b"\r"  # classic Mac line ends: a line is what a CR ends
    block_size = min(BLOCK, max_line_bytes) if max_line_bytes else BLOCK
    digest, offset, carry = hashlib.sha256(), 0, 0
    eol = source.eol
    too_long_at: int | None = None  # byte offset where the first over-long line starts
    while offset < source.size:
        block = os.pread(source.fd, block_size, offset)
        if not block:
            break
        digest.update(block)
        if max_line_bytes is not None and too_long_at is None:
            first = block.find(eol)
            if first < 0:
                carry += len(block)
            else:
                if carry + first > max_line_bytes:
                    too_long_at = offset - carry
                carry = len(block) - block.rfind(eol) - 1
            if carry > max_line_bytes and too_long_at is None:
                too_long_at = offset + len(block) - carry
        offset += len(block)
    source.size = offset
    source.fingerprint = digest.hexdigest()
    if too_long_at is not None:
        source.long_line = source.read_at(0, too_long_at).count(eol) + 1
