"""Trajectory shards: the schema, atomic writes, the MANIFEST, and validated reads.

Stages meet only in these files. A shard is written under a temporary name and renamed when whole,
so a `part-NNNNN.parquet` that exists is complete. MANIFEST.json is written last; a stage directory
with a MANIFEST is finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MANIFEST = "MANIFEST.json"
SHARD_RE = re.compile(r"^part-(\d{5})\.parquet$")

# One row per env step. Token ids are exactly what the model read and wrote.
ROLLOUT_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("env", pa.string()),
        ("episode_id", pa.string()),
        ("iteration", pa.int32()),
        ("shard", pa.int32()),
        ("step", pa.int32()),
        ("env_seed", pa.int64()),
        ("policy_version", pa.string()),
        ("image", pa.binary()),
        ("prompt", pa.string()),
        ("prompt_token_ids", pa.list_(pa.int32())),
        ("response_token_ids", pa.list_(pa.int32())),
        ("response", pa.string()),
        ("behavior_logprobs", pa.list_(pa.float32())),
        ("action_token_start", pa.int32()),
        ("action", pa.string()),
        ("parse_ok", pa.bool_()),
        ("reward", pa.float32()),
        ("terminated", pa.bool_()),
        ("truncated", pa.bool_()),
        ("info", pa.string()),
    ]
)

SCORED_COLUMNS = ["value", "old_logprob", "return", "advantage"]
SCORED_SCHEMA = pa.schema(list(ROLLOUT_SCHEMA) + [pa.field(c, pa.float32()) for c in SCORED_COLUMNS])

NULLABLE = {"image", "action"}
# float columns that must hold finite numbers: a NaN reward would become NaN advantages and weights
FINITE = {"reward", "behavior_logprobs", *SCORED_COLUMNS}


class ShardError(ValueError):
    """A shard or manifest that does not match what a stage expects. The message names the file."""


def shard_path(stage_dir: Path, index: int) -> Path:
    return Path(stage_dir) / f"part-{index:05d}.parquet"


def shard_index(path: Path | str) -> int:
    m = SHARD_RE.match(Path(path).name)
    if m is None:
        raise ShardError(f"{path}: not a shard name (part-NNNNN.parquet)")
    return int(m.group(1))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) -> a table of exactly `schema`; a missing or mistyped field names itself."""
    columns = {}
    for field in schema:
        values = [r.get(field.name) for r in rows]
        try:
            columns[field.name] = pa.array(values, type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            raise ShardError(f"field {field.name!r}: {e}") from e
    return pa.table(columns, schema=schema)


def write_shard(table: pa.Table, path: Path) -> dict[str, Any]:
    """Write a table to `path` atomically; return its manifest entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return shard_entry(path)


def shard_entry(path: Path) -> dict[str, Any]:
    rows = pq.ParquetFile(path).metadata.num_rows
    return {"file": Path(path).name, "rows": rows, "sha256": sha256_file(path)}


def finished_shards(stage_dir: Path) -> dict[int, Path]:
    """Shards already complete in a directory (renamed into place), by index. Temp files are ignored."""
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        return {}
    out = {}
    for p in stage_dir.iterdir():
        m = SHARD_RE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def write_manifest(stage_dir: Path, shards: list[dict[str, Any]], **fields: Any) -> Path:
    """Write MANIFEST.json last: every shard with rows and checksum, plus what produced them."""
    stage_dir = Path(stage_dir)
    manifest = {**fields, "shards": shards, "rows": sum(s["rows"] for s in shards)}
    path = stage_dir / MANIFEST
    atomic_write(path, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return path


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = Path(stage_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ShardError(f"{path}: no 'shards' list")
    for i, entry in enumerate(manifest["shards"]):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("file"), str)
            and SHARD_RE.match(entry["file"]) is not None  # a bare shard name: never a path out of the stage
            and type(entry.get("rows")) is int
            and entry["rows"] >= 0
            and isinstance(entry.get("sha256"), str)
        )
        if not ok:
            raise ShardError(
                f"{path}: shards[{i}] = {json.dumps(entry)[:120]}: expected"
                ' {"file": "part-NNNNN.parquet", "rows": N, "sha256": "..."}'
            )
    return manifest


def validate_table(table: pa.Table, schema: pa.Schema, path: Path | str) -> None:
    """Every column of `schema` present with its type and no unexpected nulls; else name file + column."""
    names = set(table.schema.names)
    for field in schema:
        if field.name not in names:
            raise ShardError(f"{path}: missing column {field.name!r} (expected {field.type})")
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise ShardError(f"{path}: column {field.name!r} has type {actual}, expected {field.type}")
        if field.name not in NULLABLE and table.column(field.name).null_count:
            raise ShardError(f"{path}: column {field.name!r} has null values")
        if field.name in FINITE:
            column = table.column(field.name).combine_chunks()
            rows = np.arange(len(column))
            if pa.types.is_list(column.type):  # a row per element, so the message names the row
                rows, column = pc.list_parent_indices(column).to_numpy(), pc.list_flatten(column)
            bad = ~np.isfinite(column.to_numpy(zero_copy_only=False))
            if bad.any():
                row = int(rows[bad.argmax()])
                raise ShardError(f"{path}: column {field.name!r} row {row} is not a finite number")


def read_shard(path: Path, schema: pa.Schema, entry: dict[str, Any] | None = None) -> pa.Table:
    """Read one shard, check it against its manifest entry (checksum, rows) and the schema."""
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: listed in the manifest but missing")
    if entry is not None and sha256_file(path) != entry.get("sha256"):
        raise ShardError(f"{path}: checksum mismatch (file changed or truncated since it was written)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardError(f"{path}: not a readable Parquet file ({e})") from e
    if entry is not None and table.num_rows != entry.get("rows"):
        raise ShardError(f"{path}: {table.num_rows} rows, manifest says {entry.get('rows')}")
    validate_table(table, schema, path)
    return table.select(schema.names)


def read_stage(stage_dir: Path, schema: pa.Schema = ROLLOUT_SCHEMA) -> pl.DataFrame:
    """A finished stage directory as one polars DataFrame, every shard validated."""
    stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise ShardError(f"{stage_dir}: no {MANIFEST} (the stage that writes it has not finished)")
    tables = [read_shard(stage_dir / s["file"], schema, s) for s in manifest["shards"]]
    if not tables:
        return pl.from_arrow(schema.empty_table())  # type: ignore[return-value]
    return pl.from_arrow(pa.concat_tables(tables))  # type: ignore[return-value]
