"""Read an offline W&B run's transaction log (``run-<id>.wandb``) into protobuf records.

wandb >= 0.2x writes it from its Go core and no longer ships the Python reader, so this is the LevelDB-log
framing it uses (header ``:W&B`` + magic 0xBEE1 + version, then 32 KiB blocks of records, each with a 7-byte
header: crc32, length, type FULL/FIRST/MIDDLE/LAST), decoded into ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    assert struct.unpack("<H", data[4:6])[0] == 0xBEE1
    pos, records, pending = 7, [], b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:
            pos += left_in_block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        if pos + HEADER + length > len(data):  # the writer is still appending this record
            break
        if kind == 0 and length == 0:  # zero padding at the end of a block / file
            pos += HEADER
            continue
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: bad record checksum at byte {pos}"
        pos += HEADER + length
        if kind == FULL:
            payload = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            payload, pending = pending + chunk, b""
        else:
            raise AssertionError(f"{path}: unknown record type {kind} at byte {pos}")
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records
