import hashlib
import json

import polars as pl
import pyarrow as pa
import pytest

from vlmagent.shards import (
    MANIFEST,
    PNG_SIGNATURE,
    ROLLOUT_SCHEMA,
    SCORED_SCHEMA,
    ShardError,
    finished_shards,
    read_shard,
    read_stage,
    shard_path,
    to_table,
    write_manifest,
    write_shard,
)


def make_row(i: int, **over):
    row = {
        "run": "r",
        "env": "numberline",
        "episode_id": f"ep{i // 3}",
        "iteration": 0,
        "shard": 0,
        "step": i % 3,
        "env_seed": 1234567890123 + i,
        "policy_version": "oracle",
        "image": PNG_SIGNATURE + bytes([i, 1, 2]) if i % 2 else None,
        "prompt": "p",
        "prompt_token_ids": [1, 2, i],
        "response_token_ids": [3, 4],
        "response": '{"action": "+"}',
        "behavior_logprobs": [-0.5, -0.25],
        "action_token_start": 1,
        "action": "+" if i % 4 else None,
        "parse_ok": bool(i % 4),
        "reward": 1.0 if i % 3 == 2 else 0.0,
        "terminated": i % 3 == 2,
        "truncated": False,
        "info": json.dumps({"i": i}),
    }
    row.update(over)
    return row


def write_stage(tmp_path, n_shards=2, rows=5):
    entries = []
    for s in range(n_shards):
        table = to_table([make_row(i, shard=s) for i in range(rows)], ROLLOUT_SCHEMA)
        entries.append(write_shard(table, shard_path(tmp_path, s)))
    write_manifest(tmp_path, entries, stage="collect")
    return entries


def test_round_trip_keeps_every_value(tmp_path):
    write_stage(tmp_path)
    df = read_stage(tmp_path)
    assert df.height == 10
    expected = pl.from_arrow(to_table([make_row(i, shard=0) for i in range(5)], ROLLOUT_SCHEMA))
    assert df.filter(pl.col("shard") == 0).equals(expected)
    assert df["prompt_token_ids"].to_list()[4] == [1, 2, 4]
    assert df["image"].to_list()[:2] == [None, PNG_SIGNATURE + bytes([1, 1, 2])]
    assert df.schema["behavior_logprobs"] == pl.List(pl.Float32)


def test_manifest_lists_rows_and_checksums(tmp_path):
    entries = write_stage(tmp_path, n_shards=3, rows=4)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["rows"] == 12
    assert [s["file"] for s in manifest["shards"]] == [e["file"] for e in entries]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert list(finished_shards(tmp_path)) == [0, 1, 2]


def test_temp_files_are_not_finished_shards(tmp_path):
    (tmp_path / ".part-00000.parquet.tmp-123").write_bytes(b"half")
    assert finished_shards(tmp_path) == {}


def test_truncated_shard_is_named(tmp_path):
    write_stage(tmp_path)
    path = shard_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ShardError, match=r"part-00001\.parquet.*checksum"):
        read_stage(tmp_path)


def test_unreadable_shard_is_named_even_with_matching_checksum(tmp_path):
    path = shard_path(tmp_path, 0)
    path.write_bytes(b"not parquet")

    entry = {"file": path.name, "rows": 1, "sha256": hashlib.sha256(b"not parquet").hexdigest()}
    write_manifest(tmp_path, [entry])
    with pytest.raises(ShardError, match=r"part-00000\.parquet: not a readable Parquet"):
        read_stage(tmp_path)


def test_missing_and_mistyped_columns_are_named(tmp_path):
    table = to_table([make_row(0)], ROLLOUT_SCHEMA).drop_columns(["reward"])
    write_manifest(tmp_path, [write_shard(table, shard_path(tmp_path, 0))])
    with pytest.raises(ShardError, match=r"part-00000\.parquet: missing column 'reward'"):
        read_stage(tmp_path)

    other = tmp_path / "b"
    table = to_table([make_row(0)], ROLLOUT_SCHEMA)
    table = table.set_column(table.schema.get_field_index("step"), "step", pa.array([0], pa.int64()))
    write_manifest(other, [write_shard(table, shard_path(other, 0))])
    with pytest.raises(ShardError, match=r"column 'step' has type int64, expected int32"):
        read_stage(other)


def test_missing_shard_and_missing_manifest_are_named(tmp_path):
    write_stage(tmp_path)
    shard_path(tmp_path, 0).unlink()
    with pytest.raises(ShardError, match=r"part-00000\.parquet: listed in the manifest but missing"):
        read_stage(tmp_path)
    with pytest.raises(ShardError, match="no MANIFEST.json"):
        read_stage(tmp_path / "nowhere")


def test_row_with_wrong_field_type_names_the_field():
    with pytest.raises(ShardError, match="field 'reward'"):
        to_table([make_row(0, reward="high")], ROLLOUT_SCHEMA)


def test_scored_schema_extends_rollouts(tmp_path):
    rows = [make_row(i, value=0.5, old_logprob=-1.0, advantage=0.1, **{"return": 1.0}) for i in range(3)]
    write_manifest(tmp_path, [write_shard(to_table(rows, SCORED_SCHEMA), shard_path(tmp_path, 0))])
    df = read_stage(tmp_path, SCORED_SCHEMA)
    assert df["return"].to_list() == [1.0, 1.0, 1.0]
    write_stage(tmp_path / "rollouts")
    with pytest.raises(ShardError, match="missing column 'value'"):
        read_stage(tmp_path / "rollouts", SCORED_SCHEMA)


@pytest.mark.parametrize(
    "over, column, row",
    [
        ({"reward": float("nan")}, "reward", 2),
        ({"reward": float("-inf")}, "reward", 2),
        ({"behavior_logprobs": [-0.5, float("nan")]}, "behavior_logprobs", 2),
    ],
)
def test_non_finite_numbers_are_named_with_their_row(tmp_path, over, column, row):
    """A NaN reward would pass score into NaN advantages and make update fail far from its cause."""
    rows = [make_row(i, **(over if i == row else {})) for i in range(4)]
    write_manifest(tmp_path, [write_shard(to_table(rows, ROLLOUT_SCHEMA), shard_path(tmp_path, 0))])
    with pytest.raises(
        ShardError, match=rf"part-00000\.parquet: column '{column}' row {row} is not a finite"
    ):
        read_stage(tmp_path)


def test_scored_non_finite_advantage_is_named(tmp_path):
    rows = [make_row(i, value=0.5, old_logprob=-1.0, advantage=0.1, **{"return": 1.0}) for i in range(3)]
    rows[1]["advantage"] = float("inf")
    write_manifest(tmp_path, [write_shard(to_table(rows, SCORED_SCHEMA), shard_path(tmp_path, 0))])
    with pytest.raises(ShardError, match="column 'advantage' row 1 is not a finite number"):
        read_stage(tmp_path, SCORED_SCHEMA)


@pytest.mark.parametrize(
    "entry",
    [
        {"file": "../elsewhere/part-00000.parquet", "rows": 5, "sha256": "x"},
        {"file": "part-00000.parquet", "rows": "5", "sha256": "x"},
        {"file": "part-00000.parquet", "rows": -1, "sha256": "x"},
        {"file": "part-00000.parquet", "rows": 5},
        "part-00000.parquet",
    ],
)
def test_malformed_manifest_entry_is_named(tmp_path, entry):
    write_stage(tmp_path, n_shards=1)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"].append(entry)
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"MANIFEST\.json: shards\[1\] = .*expected"):
        read_stage(tmp_path)


def test_bad_image_bytes_and_token_ids_are_named_with_their_row(tmp_path):
    rows = [make_row(i) for i in range(4)]
    rows[3]["image"] = b"not a png"
    write_shard(to_table(rows, ROLLOUT_SCHEMA), shard_path(tmp_path / "img", 0))
    with pytest.raises(ShardError, match=r"part-00000.parquet: column 'image' row 3 is not PNG bytes"):
        read_shard(shard_path(tmp_path / "img", 0), ROLLOUT_SCHEMA)
    rows = [make_row(i) for i in range(4)]
    rows[2]["prompt_token_ids"] = [1, -5]
    write_shard(to_table(rows, ROLLOUT_SCHEMA), shard_path(tmp_path / "ids", 0))
    with pytest.raises(ShardError, match=r"'prompt_token_ids' row 2 has token id -5"):
        read_shard(shard_path(tmp_path / "ids", 0), ROLLOUT_SCHEMA)
    rows = [make_row(i) for i in range(4)]
    write_shard(to_table(rows, ROLLOUT_SCHEMA), shard_path(tmp_path / "vocab", 0))
    with pytest.raises(
        ShardError, match=r"'prompt_token_ids' row 3 has token id 3, outside the vocabulary \[0, 3\)"
    ):
        read_shard(shard_path(tmp_path / "vocab", 0), ROLLOUT_SCHEMA, vocab_size=3)
