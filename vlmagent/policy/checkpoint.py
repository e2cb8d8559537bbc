"""Checkpoints: `ckpt/NNNNNN/` = HF model dir + processor files + value_head.safetensors + vlmagent.json.

With LoRA the model part is the peft adapter and vlmagent.json names the base model (`base_model`).

vlmagent.json holds what the caller passes in `meta` (parent checkpoint, step, config hash, the inputs
that made it...) plus the list of files with their sizes and the weights' sha256; it is written last. The whole directory is built under a temporary name
beside the target and renamed into place, so a reader never sees half a checkpoint. Extra files (the
update stage's optimizer.pt, ...) are written by callables inside the same temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmagent.policy.lora import ADAPTER_CONFIG, base_model_of, is_lora, unwrap
from vlmagent.policy.value import VALUE_HEAD_FILE, save_value_head
from vlmagent.shards import ShardError, clean_stale_temps, read_json, sha256_file, weights_sha256

if TYPE_CHECKING:  # a type only: load imports this module
    from vlmagent.policy.load import Policy

FORMAT_VERSION = 1
META_FILE = "vlmagent.json"


class CheckpointError(RuntimeError):
    pass


def is_run_checkpoint(d: str | Path) -> bool:
    """A run's ckpt/NNNNNN: always written whole by save_checkpoint, so never to be read as a plain HF
    model (one that lost its vlmagent.json, value head and Adam state would silently restart them)."""
    d = Path(d)
    return d.parent.name == "ckpt" and re.fullmatch(r"\d{6}", d.name) is not None


def save_checkpoint(
    dir: str | Path,
    policy: Policy,
    meta: dict[str, Any],
    extra_files: dict[str, Callable[[Path], None]] | None = None,
    overwrite: bool = False,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint to `dir` atomically (temp dir beside it, then rename).

    meta must be JSON-serialisable (e.g. {"parent": "ckpt/000000", "step": 1, "config_hash": "..."});
    extra_files maps a file name to a callable that writes that file at the path it is given.
    An existing `dir` is an error unless overwrite=True. `state_dict`: the model's weights when the model
    itself holds only a shard of them (FSDP), gathered whole.
    """
    dest, model = Path(dir), policy.model
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists (give another output)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    # a killed writer's temp dir (not its .old-PID one: killed mid-swap, that may be the only whole copy)
    clean_stale_temps(dest.parent, re.compile(rf"^\.{re.escape(dest.name)}\.tmp-(\d+)$"))
    tmp.mkdir()
    try:
        if is_lora(model):  # adapter only, and which base it goes on
            model.save_pretrained(tmp)
            meta = {**meta, "base_model": base_model_of(model)}
        else:
            unwrap(model).save_pretrained(tmp, state_dict=state_dict)
        policy.processor.save_pretrained(tmp)
        save_value_head(policy.value_head, tmp / VALUE_HEAD_FILE)
        for name, write in (extra_files or {}).items():
            write(tmp / name)
            if not (tmp / name).exists():
                raise CheckpointError(f"extra file {name!r}: its writer created nothing")
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        record = {**meta, "format": FORMAT_VERSION, "files": files, "sha256": weights_sha256(tmp)}
        (tmp / META_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        if dest.exists():  # overwrite: move the old one aside first, a rename cannot replace a dir
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def check_checkpoint(dir: str | Path) -> dict[str, Any]:
    """Raise CheckpointError naming every missing or truncated file; return vlmagent.json's content."""
    d = Path(dir)
    if not d.is_dir():
        raise CheckpointError(f"{d}: no such checkpoint directory")
    if not (d / META_FILE).exists():
        raise CheckpointError(f"{d}: incomplete checkpoint, missing: {META_FILE}")
    try:
        meta = read_json(d / META_FILE)
    except ShardError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files", {}), dict):
        raise CheckpointError(f"{d / META_FILE}: expected a JSON object with a 'files' object")
    missing, wrong = [], []
    for name, size in meta.get("files", {}).items():
        if not (d / name).exists():
            missing.append(name)
        elif (d / name).stat().st_size != size:
            wrong.append(f"{name} ({(d / name).stat().st_size} bytes, expected {size})")
    # the essentials, whatever the file list says
    if meta.get("base_model"):  # LoRA: the adapter on a base model kept elsewhere
        essentials = [ADAPTER_CONFIG, "adapter_model.safetensors", VALUE_HEAD_FILE]
    else:
        essentials = ["config.json", VALUE_HEAD_FILE]
        if not ((d / "model.safetensors").exists() or (d / "model.safetensors.index.json").exists()):
            essentials.append("model.safetensors")
    missing += [n for n in essentials if not (d / n).exists() and n not in missing]
    if missing or wrong:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"wrong size: {', '.join(wrong)}"] if wrong else []
        )
        raise CheckpointError(f"{d}: incomplete checkpoint, {'; '.join(parts)}")
    # same-size garbage passes the sizes: the weights' hashes (None: a file too big to hash at every load)
    for name, digest in (meta.get("sha256") or {}).items():
        if digest is not None and (d / name).exists() and sha256_file(d / name) != digest:
            raise CheckpointError(f"{d / name}: checksum mismatch (changed since the checkpoint was written)")
    return meta
