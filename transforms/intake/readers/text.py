"""What a text extract (CSV, NDJSON, JSON) really is before any parser sees it.

Compression, byte-order marks and UTF-16/32 are recognised from the first bytes, so a gzip file
named `.csv` or a UTF-16 export is named as what it is instead of failing as something else:
accepted when the contract allows it, otherwise rejected under `compression` or `encoding`.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import os
import tempfile
import zlib
from typing import IO

from schemas.contract import DepartmentContract
from transforms.intake.common import reject
from transforms.intake.source import BLOCK, Source, descriptor_path, open_descriptor

# Characters of the text's beginning and end that the readers look at (header, last row).
EDGE_CHARS = 1 << 16

_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)", "utf-32"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)", "utf-32"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)", "utf-16"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)", "utf-16"),
)


def wide_encoding(head: bytes) -> tuple[str, str] | None:
    """(description, codec) of UTF-16/32 text, by its BOM or by NUL bytes between ASCII ones."""
    for bom, words, codec in _BOMS:
        if head.startswith(bom):
            return words, codec
    sample = head[:4096]
    if len(sample) >= 8 and sample.count(0) * 3 > len(sample):
        even_nuls = sample[0::2].count(0)
        odd_nuls = sample[1::2].count(0)
        if odd_nuls > even_nuls:
            return "UTF-16 (little-endian, no byte-order mark)", "utf-16-le"
        return "UTF-16 (big-endian, no byte-order mark)", "utf-16-be"
    return None


def unpacked(source: Source, contract: DepartmentContract) -> Source:
    """The file to read: `source` itself if it is not compressed; if it is gzip and the contract
    allows it, its stream unpacked a block at a time into an unnamed temporary file, opened as a
    `Source` of the same name (lines measured against maxLineBytes as in any file). Rejected if
    it is compressed and the contract does not say so, if it unpacks to more than the
    contract's maxDecompressedBytes, or if the stream is damaged."""
    head = source.head(8)
    name = source.name
    if head.startswith(_ZIP):
        raise reject(name, "compression", "file is a zip archive (or a spreadsheet), not text")
    if not head.startswith(_GZIP):
        return source
    if contract.compression != "gzip":
        raise reject(
            name, "compression",
            f"file is gzip-compressed; the contract declares {contract.compression}",
        )
    limit = contract.limits.max_decompressed_bytes
    with tempfile.TemporaryFile(prefix="cohortshare-") as spool:
        size = 0
        try:
            with gzip.GzipFile(fileobj=_Reader(source)) as stream:
                while block := stream.read(min(BLOCK, limit + 1 - size)):
                    size += len(block)
                    if size > limit:
                        raise reject(
                            name, "resource_limit",
                            f"unpacks to more than the contract's {limit} bytes "
                            "(maxDecompressedBytes)",
                        )
                    spool.write(block)
        except (OSError, EOFError, zlib.error):
            raise reject(name, "truncated", "the gzip stream is damaged or cut short") from None
        spool.flush()
        # Its own descriptor: the unnamed file lives as long as the Source that reads it.
        return open_descriptor(
            source.path, os.dup(spool.fileno()), source.mtime,
            max_line_bytes=contract.limits.max_line_bytes,
        )


class _Reader:
    """A minimal file object over a Source, for gzip."""

    def __init__(self, source: Source) -> None:
        self.source, self.offset = source, 0

    def read(self, size: int = -1) -> bytes:
        size = self.source.size - self.offset if size is None or size < 0 else size
        data = self.source.read_at(self.offset, size)
        self.offset += len(data)
        return data


def transcoded(
    source: Source, codec: str, encoding: str, *, refuse_utf8: bool = True
) -> tuple[IO[bytes], str, str]:
    """The file in `codec` re-encoded as UTF-8, which is all Polars
    reads, a block at a time into a temporary file with no name; and the text's first and
    last `EDGE_CHARS` characters.

    Decoded whole, a 400 MB extract was held three times (bytes, text, UTF-8 bytes) and its
    UTF-8 copy kept for the whole read. The temporary file is unnamed (O_TMPFILE, or unlinked
    at once), so it is gone when closed, even if the process is killed. A byte-order mark is
    dropped. With `refuse_utf8`, a file that is valid UTF-8 and not plain ASCII is rejected as
    UTF-8, not decoded as `codec` into mojibake."""
    decoder = codecs.getincrementaldecoder(codec)()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    spool = tempfile.TemporaryFile(prefix="cohortshare-")  # noqa: SIM115 - returned open
    head, tail = "", ""
    ascii_only = could_be_utf8 = True
    undecodable = False
    try:
        for block in itertools.chain(source.blocks(), [b""]):  # b"" ends both decoders
            final = not block
            ascii_only = ascii_only and block.isascii()
            if could_be_utf8:
                try:
                    utf8.decode(block, final=final)
                except UnicodeDecodeError:
                    could_be_utf8 = False
            if undecodable:
                continue
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError:
                undecodable = True  # read on: a UTF-8 file is named as such
                continue
            if len(head) < EDGE_CHARS:
                text = text.removeprefix("\ufeff") if not head else text
                head = (head + text)[:EDGE_CHARS]
            spool.write(text.encode("utf-8"))
            tail = (tail + text)[-EDGE_CHARS:]
        if refuse_utf8 and could_be_utf8 and not ascii_only:
            raise reject(source.name, "encoding",
                         f"file is UTF-8 but the contract declares {encoding}")
        if undecodable:
            raise reject(source.name, "encoding", f"file is not valid {encoding}")
        spool.flush()
    except BaseException:
        spool.close()
        raise
    return spool, head, tail


def spool_path(spool: IO[bytes]) -> str:
    return descriptor_path(spool.fileno())
