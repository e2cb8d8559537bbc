"""Trajectory shards: the schema, atomic writes, the MANIFEST, and validated reads.

Stages meet only in these files. A shard is written under a temporary name and renamed when whole,
so a `part-NNNNN.parquet` that exists is complete. MANIFEST.json is written last; a stage directory
with a MANIFEST is finished.

A stage knows what it was asked: its inputs (stage, env, seeds, policy and its weights' hash, the
parent stage's MANIFEST hash, the config fields that change its rows) go to INPUTS.json before its
first shard and into its MANIFEST (a checkpoint's: vlmagent.json). `stage_done` compares them on a
rerun: the same inputs resume or are a no-op, other inputs stop with exit 2 unless --overwrite.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MANIFEST = "MANIFEST.json"
INPUTS = "INPUTS.json"
CHECKPOINT_META = "vlmagent.json"  # a checkpoint's record (vlmagent.policy.checkpoint.META_FILE)
SHARD_RE = re.compile(r"^part-(\d{5})\.parquet$")
# the temp names a stage writes in its dir (write_shard's, atomic_write's); save_checkpoint's lie beside it
STAGE_TEMP_RE = re.compile(
    r"^\.(?:part-\d{5}\.parquet|MANIFEST\.json|INPUTS\.json|summary\.json)\.tmp-(\d+)$"
)
# weight files above this are not hashed: reading 2 GiB takes seconds at every load and every stage
HASH_LIMIT = 2 << 30

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
TOKEN_COLUMNS = {"prompt_token_ids", "response_token_ids"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def read_json(path: Path) -> Any:
    """A JSON file's content; a file that does not parse is a ShardError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ShardError(f"{path}: not valid JSON ({str(e)[:200]})") from None


def weights_sha256(model_dir: Path) -> dict[str, str | None]:
    """sha256 of each *.safetensors file of a model dir, by name; None for a file above HASH_LIMIT."""
    return {
        p.name: sha256_file(p) if p.stat().st_size <= HASH_LIMIT else None
        for p in sorted(Path(model_dir).glob("*.safetensors"))
    }


def policy_inputs(policy: str) -> dict[str, Any]:
    """The policy part of a stage's inputs: a checkpoint directory's absolute path (the same directory
    named relative or absolute is the same input) and a hash of its weights (those recorded in its
    vlmagent.json, else hashed here; a file too big to hash counts by its size); else the name as given."""
    d = Path(policy)
    if policy in ("oracle", "random") or not d.is_dir():
        return {"policy": policy}
    meta = read_json(d / CHECKPOINT_META) if (d / CHECKPOINT_META).exists() else {}
    hashes = meta.get("sha256") if isinstance(meta, dict) else None
    if not hashes:
        hashes = weights_sha256(d)
    ident = {n: h or f"{(d / n).stat().st_size} bytes" for n, h in sorted(hashes.items()) if (d / n).exists()}
    return {
        "policy": str(d.resolve()),
        "policy_sha256": hashlib.sha256(json.dumps(ident).encode()).hexdigest(),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale_temps(directory: Path, names: re.Pattern = STAGE_TEMP_RE) -> None:
    """Remove the temp files and dirs matching `names` (group 1: the writer's PID) whose writer is dead
    (killed, or stopped by a full disk). A PID is this machine's: a worker on another machine writing into
    a shared dir could lose its temp file, and fails (its rerun redoes the shard)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        m = names.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def recorded_inputs(stage_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """(what a stage dir says it was made from, whether that is a whole record): its MANIFEST's (or
    checkpoint's) inputs, else INPUTS.json. A record from before inputs were recorded gives what it has,
    not whole: its stage (a checkpoint: that an update made it, and from which parent)."""
    d = Path(stage_dir)
    for name in (MANIFEST, CHECKPOINT_META, INPUTS):
        if (d / name).exists():
            record = read_manifest(d) if name == MANIFEST else read_json(d / name)
            inputs = record if name == INPUTS else record.get("inputs") if isinstance(record, dict) else None
            if not isinstance(record, dict) or not isinstance(inputs, dict | None):
                raise ShardError(
                    f"{d / name}: expected a JSON object{' under inputs' if name != INPUTS else ''}"
                )
            if inputs is not None:
                return inputs, True
            if name == MANIFEST:
                return {"stage": record.get("stage")}, False
            stage = (
                "update" if "update_index" in record else "sft" if {"sft", "sft_step"} & set(record) else None
            )
            return {"stage": stage, "policy": record.get("parent", record.get("sft_parent"))}, False
    return None, False


def clear_stage(stage_dir: Path) -> None:
    """--overwrite: delete a stage's outputs (shards, MANIFEST, INPUTS, eval's summary). A checkpoint is
    replaced whole by save_checkpoint(overwrite=True) instead, so the old one stays until the new is in place."""
    d = Path(stage_dir)
    if not d.is_dir():
        return
    for p in d.iterdir():
        if (
            SHARD_RE.match(p.name)
            or p.name in (MANIFEST, INPUTS, "summary.json")
            or STAGE_TEMP_RE.match(p.name)
        ):
            p.unlink(missing_ok=True)


def stage_done(stage_dir: Path, inputs: dict[str, Any], overwrite: bool = False) -> bool:
    """True when `stage_dir` is finished from these `inputs` (a rerun is a no-op). False when the stage is
    to run (or resume: what is there was made from the same inputs). Another stage's output, or one made
    from other inputs, is a ShardError (exit 2) naming the dir and the first field that differs, unless
    `overwrite`, which clears it first. Call it before any work; `record_inputs` before the first shard."""
    d = Path(stage_dir)
    if d.exists() and not d.is_dir():
        raise ShardError(f"{d}: exists and is not a directory")
    clean_stale_temps(d)  # (a checkpoint's temp dir lies beside it: save_checkpoint cleans those)
    if overwrite:
        clear_stage(d)
    recorded, whole = recorded_inputs(d)
    if recorded is None:
        if not overwrite and finished_shards(d):
            raise ShardError(
                f"{d}: holds shards but no {INPUTS} saying what made them; give --overwrite to start over"
            )
        return False
    finished = (d / MANIFEST).exists() or (d / CHECKPOINT_META).exists()
    if overwrite and finished:  # a checkpoint: save_checkpoint replaces it
        return False
    keys = sorted(set(recorded) | set(inputs)) if whole else list(recorded)
    same_weights = recorded.get("policy_sha256") is not None and recorded.get("policy_sha256") == inputs.get(
        "policy_sha256"
    )
    for key in sorted(keys, key=lambda k: k != "stage"):  # another stage's output: say that first
        old, new = recorded.get(key), inputs.get(key)
        if key == "policy" and same_weights:  # the same weights under another path (a copy): the same policy
            continue
        if old != new:
            what = (
                f"not the output of {inputs.get('stage')} (it records no stage)"
                if key == "stage" and old is None
                else f"made with {key} = {json.dumps(old)}, asked for {key} = {json.dumps(new)}"
            )
            raise ShardError(f"{d}: {what}; give --overwrite to start over, or another output")
    return finished


def record_inputs(stage_dir: Path, inputs: dict[str, Any]) -> None:
    """INPUTS.json before the first shard, so a killed stage still says what it was making. Created only
    if absent (a hard link cannot replace a file): of two workers racing, the second compares."""
    d = Path(stage_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / INPUTS
    tmp = d / f".{INPUTS}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(inputs, indent=2, sort_keys=True))
    try:
        os.link(tmp, path)
    except FileExistsError:
        stage_done(d, inputs)  # the other worker's: the same inputs, or exit 2
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # a full disk leaves no half-written temp behind
        tmp.unlink(missing_ok=True)


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
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # a full disk leaves no half-written temp behind
        tmp.unlink(missing_ok=True)
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
    manifest = read_json(path)
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


def validate_table(
    table: pa.Table, schema: pa.Schema, path: Path | str, vocab_size: int | None = None
) -> None:
    """Every column of `schema` present with its type and no unexpected nulls, token ids in [0, vocab_size)
    (a model would index out of its embedding); else name file + column."""
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
        if field.name == "image":  # the observation as collect stored it: PNG bytes (or null)
            png = pc.equal(
                pc.binary_slice(table.column("image"), 0, 8), pa.scalar(PNG_SIGNATURE, pa.binary())
            )
            bad = np.asarray(pc.fill_null(pc.invert(png), False).to_numpy(zero_copy_only=False))
            if bad.any():
                raise ShardError(f"{path}: column 'image' row {int(bad.argmax())} is not PNG bytes")
        if field.name in TOKEN_COLUMNS:
            column = table.column(field.name).combine_chunks()
            ids = pc.list_flatten(column).to_numpy(zero_copy_only=False)
            bad = (ids < 0) | (ids >= vocab_size if vocab_size is not None else False)
            if bad.any():
                row = int(pc.list_parent_indices(column).to_numpy()[bad.argmax()])
                raise ShardError(
                    f"{path}: column {field.name!r} row {row} has token id {int(ids[bad.argmax()])},"
                    f" outside the vocabulary [0, {vocab_size if vocab_size is not None else 'N'})"
                )


def read_shard(
    path: Path, schema: pa.Schema, entry: dict[str, Any] | None = None, vocab_size: int | None = None
) -> pa.Table:
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
    validate_table(table, schema, path, vocab_size)
    return table.select(schema.names)


def read_stage(
    stage_dir: Path, schema: pa.Schema = ROLLOUT_SCHEMA, vocab_size: int | None = None
) -> pl.DataFrame:
    """A finished stage directory as one polars DataFrame, every shard validated."""
    stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise ShardError(f"{stage_dir}: no {MANIFEST} (the stage that writes it has not finished)")
    tables = [read_shard(stage_dir / s["file"], schema, s, vocab_size) for s in manifest["shards"]]
    if not tables:
        return pl.from_arrow(schema.empty_table())  # type: ignore[return-value]
    return pl.from_arrow(pa.concat_tables(tables))  # type: ignore[return-value]
