"""Low-level TIFF structure: the file header, IFD entries and tag values, read from a buffer.

`IfdReader` collects every missing byte range instead of stopping at the first one, so the
header parser can ask for all of them in one `NeedBytes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .buffer import NeedBytes, SparseBuffer, TiffError
from .tags import (
    ASCII,
    FIELD_TYPES,
    FLOAT_TYPES,
    INTEGER_TYPES,
    STRIP_BYTE_COUNTS,
    STRIP_OFFSETS,
    TILE_BYTE_COUNTS,
    TILE_OFFSETS,
)

__all__ = ["FileHeader", "IfdEntry", "Ifd", "IfdReader", "read_file_header", "IFD_READAHEAD",
           "MAX_TILES", "MAX_VALUE_BYTES", "check_tile_table"]

# Bytes requested at an IFD whose entry count is still unknown: room for ~300 classic entries
# plus the out-of-line values libtiff and GDAL write right after the entries.
IFD_READAHEAD = 4096
# A tag value larger than this is taken as corruption rather than fetched: every tag the
# parser reads besides the tile tables (GeoKeys, model tags, JPEG tables, nodata) is a few KB.
MAX_VALUE_BYTES = 1 << 20
# Most tiles one image (every plane of it) may declare: 2**20 tiles of 256 x 256 pixels cover
# a 262144 x 262144 image. A header declaring more is refused before its tile tables are
# fetched (their values become Python ints in the parser and list columns in the index).
MAX_TILES = 1 << 20
_TILE_TABLES = {TILE_OFFSETS: "TileOffsets", TILE_BYTE_COUNTS: "TileByteCounts",
                STRIP_OFFSETS: "StripOffsets", STRIP_BYTE_COUNTS: "StripByteCounts"}


@dataclass(frozen=True)
class FileHeader:
    """The 8-byte (classic) or 16-byte (BigTIFF) file header."""

    byte_order: str  # "<" little-endian ("II"), ">" big-endian ("MM")
    bigtiff: bool
    first_ifd: int

    @property
    def size(self) -> int:
        """Length of the file header in bytes."""
        return 16 if self.bigtiff else 8


@dataclass(frozen=True)
class IfdEntry:
    """One IFD entry; ``value_at`` is the absolute offset of its value (inline or not)."""

    tag: int
    type: int
    count: int
    value_at: int

    @property
    def nbytes(self) -> int | None:
        """Size of the value in bytes (None for an unknown field type)."""
        info = FIELD_TYPES.get(self.type)
        return None if info is None else info[2] * self.count


@dataclass(frozen=True)
class Ifd:
    """An image file directory: its position, its entries by tag and the next IFD's offset."""

    offset: int
    entries: dict[int, IfdEntry]
    next_offset: int
    end: int  # first byte after the entries and the next-IFD offset


def read_file_header(buf: SparseBuffer) -> FileHeader:
    """Decode the file header: byte order, classic or BigTIFF, first IFD offset."""
    want = 16 if buf.eof is None else min(16, buf.eof)
    if buf.eof is not None and buf.eof < 8:
        raise TiffError(f"not a TIFF file: only {buf.eof} bytes long")
    if not buf.covers(0, 8):
        raise NeedBytes(buf.missing(0, want))
    head = buf.read(0, 8)
    if head[:2] == b"II":
        order = "<"
    elif head[:2] == b"MM":
        order = ">"
    else:
        raise TiffError(f"not a TIFF file: bad byte-order mark {head[:4]!r}")
    (magic,) = struct.unpack(order + "H", head[2:4])
    if magic == 42:
        (first,) = struct.unpack(order + "I", head[4:8])
        return FileHeader(order, False, first)
    if magic != 43:
        raise TiffError(f"not a TIFF file: bad magic number {magic} (42 or 43 expected)")
    if buf.eof is not None and buf.eof < 16:
        raise TiffError(f"truncated BigTIFF: only {buf.eof} bytes long")
    if not buf.covers(8, 16):
        raise NeedBytes(buf.missing(8, 16))
    offset_size, zero, first = struct.unpack(order + "HHQ", buf.read(4, 12))
    if offset_size != 8 or zero != 0:
        raise TiffError(f"not a BigTIFF file: bad offset size {offset_size} in header")
    return FileHeader(order, True, first)


class IfdReader:
    """Reads IFDs and tag values from a buffer, recording missing ranges instead of raising."""

    def __init__(
        self, buf: SparseBuffer, header: FileHeader, readahead: int = IFD_READAHEAD
    ) -> None:
        self.buf = buf
        self.header = header
        self.readahead = max(int(readahead), 0)
        self.missing: list[tuple[int, int]] = []
        self.max_end = header.size

    def need(self) -> None:
        """Raise `NeedBytes` listing every range recorded so far, if any."""
        if self.missing:
            raise NeedBytes(self.missing)

    def get(self, start: int, length: int) -> bytes | None:
        """The bytes at ``[start, start + length)``, or None (range recorded) when not held."""
        try:
            data = self.buf.read(start, length)
        except NeedBytes as exc:
            self.missing.extend(exc.ranges)
            return None
        self.max_end = max(self.max_end, start + length)
        return data

    def ifd(self, offset: int) -> Ifd | None:
        """Decode the IFD at ``offset``; None (ranges recorded) while its bytes are missing."""
        big = self.header.bigtiff
        bo = self.header.byte_order
        count_size, entry_size, next_size = (8, 20, 8) if big else (2, 12, 4)
        if offset < self.header.size:
            raise TiffError(f"corrupt TIFF: IFD offset {offset} points into the file header")
        eof = self.buf.eof
        if not self.buf.covers(offset, offset + count_size):
            if eof is not None and offset + count_size > eof:
                raise TiffError(
                    f"truncated TIFF: IFD at offset {offset} lies beyond the end of the file "
                    f"({eof} bytes)"
                )
            end = offset + max(self.readahead, count_size)
            end = end if eof is None else min(end, eof)
            self.missing.extend(self.buf.missing(offset, end))
            return None
        raw = self.get(offset, count_size)
        assert raw is not None
        (count,) = struct.unpack(bo + ("Q" if big else "H"), raw)
        if count == 0 or count > 65535:
            raise TiffError(f"corrupt TIFF: IFD at offset {offset} declares {count} entries")
        body_at = offset + count_size
        body_end = body_at + count * entry_size + next_size
        if eof is not None and body_end > eof:
            raise TiffError(
                f"truncated TIFF: IFD at offset {offset} ends at byte {body_end} but the file "
                f"has only {eof} bytes"
            )
        if not self.buf.covers(body_at, body_end):
            # the values of the entries usually follow them: read ahead like for a new IFD
            end = max(body_end, offset + self.readahead)
            self.missing.extend(self.buf.missing(body_at, end if eof is None else min(end, eof)))
            return None
        body = self.get(body_at, body_end - body_at)
        assert body is not None
        fmt = bo + ("HHQ8s" if big else "HHI4s")
        inline_size = 8 if big else 4
        entries: dict[int, IfdEntry] = {}
        for i in range(count):
            pos = i * entry_size
            tag, ftype, n, field = struct.unpack_from(fmt, body, pos)
            info = FIELD_TYPES.get(ftype)
            value_at = body_at + pos + (12 if big else 8)
            if info is not None and info[2] * n > inline_size:
                (value_at,) = struct.unpack(bo + ("Q" if big else "I"), field)
            entries.setdefault(tag, IfdEntry(tag, ftype, n, value_at))
        (next_offset,) = struct.unpack_from(bo + ("Q" if big else "I"), body, count * entry_size)
        return Ifd(offset, entries, next_offset, body_at + count * entry_size + next_size)

    def _raw(self, entry: IfdEntry) -> bytes | None:
        nbytes = entry.nbytes
        if nbytes is None:
            raise TiffError(f"tag {entry.tag} has unknown field type {entry.type}")
        if entry.tag in _TILE_TABLES:
            check_tile_table(entry)
        elif nbytes > MAX_VALUE_BYTES:
            raise TiffError(
                f"corrupt TIFF: tag {entry.tag} declares a {nbytes}-byte value, more than the "
                f"{MAX_VALUE_BYTES} bytes any tag this reader uses needs"
            )
        return self.get(entry.value_at, nbytes)

    def numbers(self, entry: IfdEntry, *, integer: bool) -> tuple[int | float, ...] | None:
        """The numeric values of ``entry``; TiffError when its type is not numeric (or, with
        ``integer``, not an integer type). None (ranges recorded) while missing."""
        allowed = INTEGER_TYPES if integer else INTEGER_TYPES | FLOAT_TYPES
        if entry.type not in FIELD_TYPES:
            raise TiffError(f"tag {entry.tag} has unknown field type {entry.type}")
        if entry.type not in allowed:
            kind = "an integer" if integer else "a numeric"
            name = FIELD_TYPES[entry.type][0]
            raise TiffError(f"tag {entry.tag} has field type {name}, expected {kind} type")
        raw = self._raw(entry)
        if raw is None:
            return None
        _, char, _ = FIELD_TYPES[entry.type]
        if entry.type in (5, 10):  # RATIONAL / SRATIONAL: pairs of 32-bit ints
            pairs = struct.unpack(f"{self.header.byte_order}{2 * entry.count}{char}", raw)
            return tuple((n / d) if d else float("nan") for n, d in zip(pairs[0::2], pairs[1::2]))
        return struct.unpack(f"{self.header.byte_order}{entry.count}{char}", raw)

    def text(self, entry: IfdEntry) -> str | None:
        """The value of an ASCII entry without trailing NULs (None while missing)."""
        if entry.type != ASCII:
            raise TiffError(f"tag {entry.tag} has field type {entry.type}, expected ASCII (2)")
        raw = self._raw(entry)
        return None if raw is None else raw.split(b"\x00", 1)[0].decode("latin-1")

    def blob(self, entry: IfdEntry) -> bytes | None:
        """The raw bytes of a BYTE/UNDEFINED entry (None while missing)."""
        if entry.type not in (1, 7):
            raise TiffError(
                f"tag {entry.tag} has field type {entry.type}, expected BYTE (1) or UNDEFINED (7)"
            )
        return self._raw(entry)


def check_tile_table(entry: IfdEntry) -> None:
    """Refuse a TileOffsets/TileByteCounts (or StripOffsets/StripByteCounts) entry declaring
    more than :data:`MAX_TILES` values, before any of them is fetched."""
    if entry.count > MAX_TILES:
        name = _TILE_TABLES.get(entry.tag, f"tag {entry.tag}")
        raise TiffError(
            f"corrupt or hostile TIFF: {name} declares {entry.count} tiles or strips, more "
            f"than the {MAX_TILES} one image may have here"
        )
