"""What every tokenize round shares: the run's settings (`TokenizeRun`, part of every
task), the scratch files under `_work/` and the hashes that decide sampling, the
train/valid split, mixing and the shuffle order."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from ..core import storage
from ..core.parts import PartTask, global_part
from .params import TokenizeParams

U64 = float(1 << 64)


@dataclass(frozen=True)
class TokenizeRun:
    """The settings of one tokenize run that every round's task carries."""

    params: TokenizeParams
    work: str         # scratch of this attempt (`_work/<fingerprint>`), deleted at the end
    stage: str
    stage_dir: str
    fingerprint: str
    seed: int
    tok_dir: str      # the tokenizer next to the shards (given and copied, or trained)

    def work_file(self, *names: str) -> str:
        return storage.join(self.work, *names)

    def part_task(self, part: int, input_desc: str | None) -> PartTask:
        """What `finish_part` needs to commit one part of this stage."""
        return global_part(self.stage, self.stage_dir, self.fingerprint, part, input_desc)


def part_file(part: int) -> str:
    return f"p{part:05d}.parquet"


def h64(*parts: object) -> int:
    return xxhash.xxh3_64_intdigest("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"))


def lang_key(lang: str | None) -> str:
    if not lang:
        return "und"
    return lang.split("-")[0].split("_")[0].lower()


def write_work(table: pa.Table, uri: str) -> None:
    """Scratch files under `_work/` (deleted at the end of the stage): lz4, and on
    local disk no fsync - a crash reruns the stage anyway."""
    if storage.is_s3(uri):
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="lz4", use_dictionary=False, write_statistics=False)
        storage.write_bytes(uri, sink.getvalue())
        return
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    tmp = f"{uri}.tmp-{os.getpid()}"
    pq.write_table(table, tmp, compression="lz4", use_dictionary=False, write_statistics=False)
    os.replace(tmp, uri)


def read_work(uri: str, columns: list[str] | None = None) -> pa.Table:
    if storage.is_s3(uri):
        return storage.read_parquet(uri, columns=columns)
    return pq.read_table(uri, columns=columns, use_threads=False)
