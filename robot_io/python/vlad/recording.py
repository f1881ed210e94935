"""Reading recordings of ``vlad --record DIR`` (``*.vrec``).

A recording is a stream of length-delimited protobuf messages: a varint length, then one
``RecordEntry`` (``proto/vlad.proto``), the first of which is the HEADER. Each entry holds
the daemon's receive or publish time (``t_ns``, its monotonic clock, and ``wall_ns``), its
kind, a sequence number (a gap: entries dropped there) and the wire message itself::

    import vlad
    for e in vlad.read_recording("rec/vlad-record-sim-arm-20261201T120000Z.vrec"):
        if e.kind == vlad.RecordEntry.ACTION:
            print(e.t_ns, e.action.robot_tick, list(e.action.joint_targets))

Nothing here is specific to vlad's C code: the reader uses only the stock protobuf
runtime, as any other language's would.
"""

from __future__ import annotations

import os
from typing import Iterator

from google.protobuf.internal.decoder import _DecodeVarint32

from . import vlad_pb2 as pb

__all__ = ["RecordError", "read_recording"]


class RecordError(ValueError):
    """A recording that cannot be read: not one, or damaged before its end."""


def read_recording(path: str | os.PathLike, strict: bool = False) -> Iterator[pb.RecordEntry]:
    """Yield the entries of a recording in file order.

    A daemon killed while recording leaves at most one partial entry at the end: it is
    skipped (``strict=True``: :class:`RecordError`). A file whose first entry is not a
    HEADER, or an entry that does not parse, raises :class:`RecordError` naming its offset.
    """
    with open(path, "rb") as f:
        data = f.read()
    pos, n = 0, 0
    while pos < len(data):
        start = pos
        try:
            size, pos = _DecodeVarint32(data, pos)
        except IndexError:           # the length itself is cut short
            size, pos = len(data), len(data) + 1
        if pos + size > len(data):
            if strict:
                raise RecordError(f"{path}: entry {n} at byte {start} is cut short "
                                  f"({len(data) - start} of its bytes)")
            return
        try:
            e = pb.RecordEntry.FromString(data[pos:pos + size])
        except Exception as ex:  # google.protobuf.message.DecodeError
            raise RecordError(f"{path}: entry {n} at byte {start} does not parse: {ex}") from ex
        if n == 0 and e.kind != pb.RecordEntry.HEADER:
            raise RecordError(f"{path}: not a vlad recording (the first entry is not a HEADER)")
        pos += size
        n += 1
        yield e
