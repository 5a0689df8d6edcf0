"""Reading an offline W&B run log ``run-<id>.wandb`` in tests: wandb (0.2x+) writes it from its Go core and
ships no Python reader. The file is a LevelDB log: a 7-byte file header, then 32 KiB blocks of records, each
with a 7-byte header (checksum, length, type: full / first / middle / last part); records hold
``wandb_internal_pb2.Record`` protobufs."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def chunks(path: Path) -> Iterator[bytes]:
    """The serialized records of the log, parts joined across blocks (a torn tail is left out)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run log"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # block trailer too short for a header: padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk, pos = data[pos + HEADER : pos + HEADER + length], pos + HEADER + length
        if kind == 0 or pos > len(data):
            return
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            yield pending


# wandb's generated protobuf modules make their message classes at import time and ship no stubs for them.
def records(path: Path) -> list[wandb_internal_pb2.Record]:  # type: ignore[name-defined]
    """Every record of the log."""
    parsed = []
    for chunk in chunks(path):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(chunk)
        parsed.append(record)
    return parsed


def config_and_history(path: Path) -> tuple[dict, list[dict]]:
    """The run's config (top-level key -> value) and history rows (key -> value)."""
    config: dict = {}
    history: list[dict] = []
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return config, history
