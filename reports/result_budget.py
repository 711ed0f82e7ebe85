"""What a SQL section keeps of its result: each value cut to the cell limit, and rows only while
the kept values fit the section's byte limit.

The row limit alone did not bound memory: one section of 100 rows of 5 MB each took a worker to
1 GB. Rows are read in batches and weighed as they arrive; a value over the cell limit is kept
shortened, with a mark saying so, and reading stops for good at the first row that would take
the kept values past the section's limit. A worker so holds the kept values and one batch: a
batch is sized from the largest row read so far to about BATCH_BYTES, and the first is one row.
The driver still reads a single value whole (a 1 GB value is 1 GB for a moment); only SQL
written for it could cut that on the server.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from uuid import UUID

# Values of these types are small whatever they hold; each counts this much.
FIXED_SIZE_TYPES = (type(None), bool, int, float, date, datetime, time, timedelta, UUID)
FIXED_SIZE_BYTES = 8
COMMON_FIXED_SIZE_TYPES = frozenset({type(None), int, float})
BINARY_TYPES = (bytes, bytearray, memoryview)
# What one batch of rows may weigh, going by the largest row read so far.
BATCH_BYTES = 1_000_000


def cut_mark(size: int) -> str:
    """The end of a shortened value, in the CSV and wherever the value is shown."""
    return f"… [cut from {size:,} bytes]"


def text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def value_size(value) -> int:
    """The bytes a value weighs as read: text in UTF-8, binary by its length."""
    if isinstance(value, str):
        return text_bytes(value)
    if isinstance(value, FIXED_SIZE_TYPES):
        return FIXED_SIZE_BYTES
    if isinstance(value, BINARY_TYPES):
        return len(value)
    return text_bytes(str(value))


def value_shortened(value, size: int, limit: int) -> str:
    """A value of `size` bytes, over `limit`, as kept: its first `limit` bytes and the mark."""
    if isinstance(value, BINARY_TYPES):
        # Written as an uncut bytes value is shown: b'...' with \xNN for most bytes.
        return f"{bytes(value[:max(0, limit - 3) // 4])!r}{cut_mark(size)}"
    text = value if isinstance(value, str) else str(value)
    # Every character is at least one byte: the first `limit` characters hold the first `limit` bytes.
    return text[:limit].encode()[:limit].decode(errors="ignore") + cut_mark(size)


@dataclass
class KeptRows:
    row_limit: int
    cell_bytes: int
    byte_limit: int
    rows: list[tuple] = field(default_factory=list)
    kept_bytes: int = 0
    # Column position -> the 1-based numbers of the rows whose value there was shortened.
    shortened: dict[int, list[int]] = field(default_factory=dict)
    # There were more rows than the row limit, or the next row did not fit the byte limit.
    over_row_limit: bool = False
    over_byte_limit: bool = False
    largest_row_read: int = 0

    def rows_to_fetch(self, most: int) -> int:
        """How many rows the next batch asks for: one past the row limit tells whether there are more."""
        if not self.largest_row_read:
            return 1
        return max(1, min(most, BATCH_BYTES // self.largest_row_read, self.row_limit + 1 - len(self.rows)))

    def keep(self, batch) -> bool:
        """Keeps the rows of `batch` that fit; False once no further row will be kept."""
        for row in batch:
            if len(self.rows) == self.row_limit:
                self.over_row_limit = True
                return False
            values, cut, cost = self._weighed(row)
            if self.kept_bytes + cost > self.byte_limit:
                self.over_byte_limit = True
                return False
            self.rows.append(values)
            self.kept_bytes += cost
            for position in cut:
                self.shortened.setdefault(position, []).append(len(self.rows))
        return True

    def _weighed(self, row) -> tuple[tuple, list[int], int]:
        """The row as kept, the positions of its shortened values, and what the kept values weigh."""
        sizes = []
        for value in row:
            # value_size, written out for the commonest kinds: this runs for every value read.
            kind = type(value)
            if kind is str:
                sizes.append(len(value) if value.isascii() else len(value.encode()))
            elif kind in COMMON_FIXED_SIZE_TYPES:
                sizes.append(FIXED_SIZE_BYTES)
            else:
                sizes.append(value_size(value))
        read = sum(sizes)
        self.largest_row_read = max(self.largest_row_read, read, 1)
        # A row within the cell limit as a whole has no value over it.
        if read <= self.cell_bytes or max(sizes) <= self.cell_bytes:
            return tuple(row), [], read
        values, cut = list(row), [position for position, size in enumerate(sizes) if size > self.cell_bytes]
        for position in cut:
            values[position] = value_shortened(values[position], sizes[position], self.cell_bytes)
            sizes[position] = text_bytes(values[position])
        return tuple(values), cut, sum(sizes)
