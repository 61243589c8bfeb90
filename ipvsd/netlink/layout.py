"""One ``struct`` unpack per netlink record whose layout the kernel repeats.

A dump of 10,000 services x 4 reals is 40,000 dest records, each written by
the same kernel fill function: the same attributes, in the same order, of the
same sizes. Walking a record's ~35 attributes (nested counters included) one
by one in Python cost 24 µs per dest record natively, measured on the layout
of the UML 6.1 kernel, which pads every u64 counter with an ``NLA_PAD``
attribute (kernels without efficient unaligned access do). A `RecordLayout`
compiled from the first record of a given length unpacks each later record
of that length in one `struct.Struct.unpack_from` and compares every
attribute header (length and type) with the first record's. A record whose
headers differ is not this layout, and its caller parses it the general way.

Equal headers mean equal structure: the same attributes at the same offsets
with the same lengths, so a record that matches is exactly as well-formed
as the one the layout was compiled from, which the general walk accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from ipvsd.netlink.wire import WireError

#: An attribute's place in a record: its type, then its types inside nests.
Path = tuple[int, ...]

_NLA = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF
_UINT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """A compiled record layout; see the module docstring.

    Attributes:
        length: the record's length in bytes (layouts are looked up by it).
        positions: where each attribute's value lies in `fields`' tuple.
            Unsigned values of 1, 2, 4 or 8 bytes are ints in host order
            (what ``uint_value`` reads); other values, and every attribute in
            ``raw``, are bytes. Attributes without a value have no position.
        sizes: each attribute's value length in bytes.
        width: how many fields a record unpacks to.
        repeats_nest: a nested attribute occurs twice, so positions cannot say
            which occurrence a reader means; callers parse such records the
            general way.
    """

    length: int
    positions: dict[Path, int]
    sizes: dict[Path, int]
    width: int
    repeats_nest: bool
    _values: struct.Struct
    _header_mask: int  # 0xff in every byte of an attribute header
    _headers: int  # the record's bytes under that mask

    def fields(self, record: memoryview) -> tuple[Any, ...] | None:
        """The record's values, or None when it is not this layout."""
        if len(record) != self.length:
            return None
        if int.from_bytes(record, "little") & self._header_mask != self._headers:
            return None
        return self._values.unpack_from(record)

    def picker(
        self, paths: Iterable[tuple[Path, int]]
    ) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """Selects the values of `paths` from ``fields + defaults``.

        Each path comes with the index in ``defaults`` of the value that
        stands in when the layout lacks the attribute.
        """
        indexes = [self.positions.get(path, self.width + default) for path, default in paths]
        getter = itemgetter(*indexes)
        if len(indexes) == 1:
            return lambda fields: (getter(fields),)
        return getter


def compile_layout(
    record: memoryview, *, nested: frozenset[Path], raw: frozenset[Path] = frozenset()
) -> RecordLayout:
    """The layout of `record`, a flat stream of netlink attributes.

    Args:
        record: an attribute stream the kernel sent.
        nested: paths whose value is itself an attribute stream, unpacked too.
        raw: paths whose value stays bytes even when 1, 2, 4 or 8 bytes long
            (big-endian ports, flag structs).

    Raises:
        WireError: an attribute overruns its stream (as ``iter_attrs`` does).
    """
    builder = _Builder(nested, raw)
    builder.walk(record, 0, len(record), ())
    values = struct.Struct("=" + "".join(builder.formats))
    if values.size != len(record):  # pragma: no cover - a bug in the walk
        raise AssertionError(f"layout of {values.size} bytes for {len(record)}")
    mask = int.from_bytes(builder.mask, "little")
    return RecordLayout(
        len(record),
        builder.positions,
        builder.sizes,
        builder.count,
        builder.repeats_nest,
        values,
        mask,
        int.from_bytes(record, "little") & mask,
    )


class _Builder:
    def __init__(self, nested: frozenset[Path], raw: frozenset[Path]) -> None:
        self._nested = nested
        self._raw = raw
        self.formats: list[str] = []
        self.mask = bytearray()
        self.positions: dict[Path, int] = {}
        self.sizes: dict[Path, int] = {}
        self.count = 0
        self._nests_seen: set[Path] = set()
        self.repeats_nest = False

    def walk(self, buf: memoryview, start: int, end: int, prefix: Path) -> None:
        offset = start
        while offset + 4 <= end:
            length, attr_type = _NLA.unpack_from(buf, offset)
            if length < 4 or offset + length > end:
                raise WireError(f"truncated netlink attribute (type={attr_type}, len={length})")
            path = (*prefix, attr_type & _NLA_TYPE_MASK)
            self._skip(4, header=True)
            size = length - 4
            self.sizes[path] = size
            if path in self._nested:
                self.repeats_nest |= path in self._nests_seen
                self._nests_seen.add(path)
                self.walk(buf, offset + 4, offset + length, path)
            elif size:
                code = None if path in self._raw else _UINT_FORMATS.get(size)
                self.formats.append(code or f"{size}s")
                self.mask += bytes(size)
                self.positions[path] = self.count
                self.count += 1
            following = min(offset + ((length + 3) & ~3), end)
            self._skip(following - offset - length)
            offset = following
        # Fewer than 4 bytes left over: the general walk ignores them as well.
        self._skip(end - offset)

    def _skip(self, size: int, *, header: bool = False) -> None:
        self.formats.append(f"{size}x")
        self.mask += (b"\xff" if header else b"\0") * size
