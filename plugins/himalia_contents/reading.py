"""File content as the contents API sends it (UTF-8 text, or base64 as `base64.encodebytes` lays it
out), produced piece by piece so that reading a large file costs about one piece of memory, not
several copies of the file (bytes, str, the base64 lines, the JSON text, the encoded body).

Everything here is blocking: call it from a worker thread.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import BinaryIO

from himalia import Model

PIECE = 57 * 16384
"""Bytes read at a time: a whole number of base64 lines (57 bytes each), about 1 MB."""


def base64_lines(data: bytes | memoryview) -> str:
    """`base64.encodebytes(data).decode()`, without its list of one small bytes object per line
    (about twice the file's size in overhead for a large file)."""
    view = memoryview(data)
    return b"".join(base64.encodebytes(view[i:i + PIECE]) for i in range(0, len(view), PIECE)).decode("ascii")


def scan(f: BinaryIO, *, utf8: bool, hash_algorithm: str | None) -> tuple[bool, str | None]:
    """One pass over `f` from where it is: whether it is all UTF-8 (when `utf8`), and its hex digest
    (when `hash_algorithm`). Rewinds `f` to the start after."""
    decoder = codecs.getincrementaldecoder("utf-8")() if utf8 else None
    digest = hashlib.new(hash_algorithm) if hash_algorithm else None
    valid = utf8
    while piece := f.read(PIECE):
        if digest is not None:
            digest.update(piece)
        if decoder is not None:
            try:
                decoder.decode(piece)
            except UnicodeDecodeError:
                valid, decoder = False, None
                if digest is None:
                    break
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
    f.seek(0)
    return valid, digest.hexdigest() if digest is not None else None


class ChangedWhileRead(Exception):
    """The file stopped being UTF-8 between the scan and the send (it was written to meanwhile)."""


@dataclass
class StreamedContent:
    """A file model whose content is still on disk: `model` has everything but `content`, and
    `pieces()` yields the JSON string's inside (escaped, ASCII) piece by piece. Close it after."""

    model: Model
    file: BinaryIO
    _decoder: codecs.IncrementalDecoder | None = field(default=None, init=False)

    def next_piece(self) -> bytes | None:
        """The next piece of the JSON-escaped content, or None at the end. Raises ChangedWhileRead."""
        raw = self.file.read(PIECE)
        if self.model["format"] == "base64":
            return base64.encodebytes(raw).replace(b"\n", b"\\n") if raw else None
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            text = self._decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            raise ChangedWhileRead(str(e)) from None
        if not raw:
            return None
        return encode_basestring_ascii(text)[1:-1].encode("ascii")

    def pieces(self) -> Iterator[bytes]:
        while (piece := self.next_piece()) is not None:
            yield piece

    def close(self) -> None:
        self.file.close()


class ReadBudget:
    """A server-wide bound on the bytes of files read whole at once (notebooks, which are parsed whole,
    and non-streamed file reads): `max_read_size_mb` bounds one read, this bounds them all together.

    A read that does not fit waits (on the event loop, holding no thread) for reads in progress to
    end; one larger than the whole budget runs alone. After `wait` seconds it is refused.
    """

    def __init__(self, total: int, wait: float):
        import asyncio

        self.total = total
        self.wait = wait
        self.in_use = 0
        self._changed = asyncio.Condition()

    def _fits(self, size: int) -> bool:
        return self.in_use == 0 or self.in_use + size <= self.total

    async def acquire(self, size: int) -> bool:
        """Take `size` bytes of the budget; False if they did not come free within `wait` seconds."""
        import asyncio

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._fits(size)), self.wait)
            except asyncio.TimeoutError:
                return False
            self.in_use += size
            return True

    async def release(self, size: int) -> None:
        async with self._changed:
            self.in_use -= size
            self._changed.notify_all()
