"""The dedup stage signs a part SIGN_BATCH_ROWS documents at a time; the index it
writes (band keys, document info, shingle sets) holds the same rows whatever the
batch size, so every later round and the decisions are the same."""
from __future__ import annotations

import glob
import json
import os

import pyarrow.parquet as pq

from lmrefinery.core import storage
from lmrefinery.core.schema import docs_to_table
from lmrefinery.dedup.near import NearParams, sign
from lmrefinery.quality.sources import chunk_text


def _part(shared_corpora: str, path: str) -> None:
    with open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        en = [json.loads(ln)["text"] for ln in f][:120]
    with open(os.path.join(shared_corpora, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8") as f:
        zh = chunk_text(f.read(), 1500)[:60]
    texts = en + zh + [t + " (copy)" for t in en[:20] + zh[:10]] + ["", "   "]
    docs = [{"id": f"d{i}", "text": t, "source": "web" if i % 3 else "books", "lang": None}
            for i, t in enumerate(texts)]
    storage.write_parquet(docs_to_table(docs), path)


def _index(ix: str) -> dict:
    """Every index file as text of its columns (NaN quality compares equal as text)."""
    return {os.path.relpath(f, ix): json.dumps(pq.read_table(f).to_pydict())
            for f in sorted(glob.glob(f"{ix}/**/*.parquet", recursive=True))}


def test_index_is_the_same_for_any_batch_size(shared_corpora, tmp_path, monkeypatch):
    part = str(tmp_path / "part.parquet")
    _part(shared_corpora, part)
    params = NearParams(buckets=4)
    got = {}
    for rows in (7, 512, 10**9):
        monkeypatch.setattr(sign, "SIGN_BATCH_ROWS", rows)
        ix = str(tmp_path / f"ix{rows}")
        r = sign.sign_part(sign.SignTask(part=2, input=part, index=ix, params=params))
        assert r.rows == 212 and r.empty == 2
        got[rows] = _index(ix)
    assert len(got[7]) == 4 + 4 + 1  # band buckets, doc partitions, shingle sets
    for rows in (512, 10**9):
        assert got[rows].keys() == got[7].keys()
        for name, table in got[7].items():
            assert got[rows][name] == table, name
    sh = json.loads(got[7]["shingles/p00002.parquet"])
    assert len(sh["node"]) == 212 and sum(map(len, sh["sh"])) > 100_000
