import bz2
import gzip
import os
import subprocess
import sys

import pyarrow as pa
import pytest
import zstandard

from lmrefinery.core import storage


@pytest.mark.parametrize("ext,comp", [(".gz", gzip.compress), (".bz2", bz2.compress),
                                      (".zst", lambda b: zstandard.ZstdCompressor().compress(b)), ("", lambda b: b)])
def test_transparent_decompression_local(tmp_path, ext, comp):
    data = b"line one\nline two\n" * 100
    p = tmp_path / f"f.txt{ext}"
    p.write_bytes(comp(data))
    with storage.open_read(str(p)) as f:
        assert f.read() == data


def test_gzip_members_concatenated(tmp_path):
    p = tmp_path / "m.gz"
    p.write_bytes(gzip.compress(b"a\n") + gzip.compress(b"b\n"))
    with storage.open_read(str(p)) as f:
        assert f.read() == b"a\nb\n"


def test_s3_roundtrip_list_stat_parquet(s3_bucket):
    base = f"s3://{s3_bucket}/x"
    storage.write_bytes(f"{base}/a/one.txt.gz", gzip.compress(b"hello\n"))
    storage.write_bytes(f"{base}/a/two.jsonl", b"{}\n")
    storage.write_bytes(f"{base}/b/three.jsonl", b"{}\n")
    assert storage.list_files(f"{base}/a/*") == [f"{base}/a/one.txt.gz", f"{base}/a/two.jsonl"]
    assert storage.list_files(f"{base}/*/*.jsonl") == [f"{base}/a/two.jsonl", f"{base}/b/three.jsonl"]
    assert storage.list_files(f"{base}/b") == [f"{base}/b/three.jsonl"]
    with storage.open_read(f"{base}/a/one.txt.gz") as f:
        assert f.read() == b"hello\n"
    info = storage.stat(f"{base}/a/two.jsonl")
    assert info.size == 3 and info.etag
    t = pa.table({"x": [1, 2, 3]})
    meta = storage.write_parquet(t, f"{base}/t.parquet")
    assert storage.read_parquet(f"{base}/t.parquet").equals(t)
    assert meta["sha256"] == storage.sha256(storage.read_bytes(f"{base}/t.parquet"))
    assert storage.exists(f"{base}/t.parquet") and not storage.exists(f"{base}/nope")
    storage.delete_prefix(f"{base}/a")
    assert storage.list_files(f"{base}/a/*") == []


def test_glob_base_makes_paths_relative():
    assert storage.glob_base("s3://b/data/web/*.jsonl") == "s3://b/data/web"
    assert storage.glob_base("/d/x/**/*.gz") == "/d/x"
    assert storage.relpath("s3://b/data/web/a.jsonl", "s3://b/data/web") == "a.jsonl"


def test_local_write_is_atomic_and_leaves_no_tmp(tmp_path):
    p = tmp_path / "d" / "f.bin"
    storage.write_bytes(str(p), b"x" * 10)
    storage.write_bytes(str(p), b"y" * 5)
    assert p.read_bytes() == b"yyyyy"
    assert os.listdir(tmp_path / "d") == ["f.bin"]


def test_missing_object_message_names_it(tmp_path, s3_bucket):
    with pytest.raises(storage.StorageError) as e:
        storage.read_bytes(f"s3://{s3_bucket}/missing.txt")
    assert f"s3://{s3_bucket}/missing.txt" in str(e.value)
    with pytest.raises(storage.StorageError) as e:
        storage.read_bytes(str(tmp_path / "nope.txt"))
    assert "nope.txt" in str(e.value)


def test_s3_without_credentials_gives_a_clear_message(tmp_path):
    """A fresh process with no AWS configuration at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_ENDPOINT_URL="http://127.0.0.1:9",
               LMR_S3_MAX_ATTEMPTS="1")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\noutput: " + str(tmp_path / "out") +
                      "\nengine: local\ninputs:\n  - {name: a, paths: ['s3://somebucket/data/*.jsonl']}\n"
                      "stages: [read]\n")
    p = subprocess.run([sys.executable, "-m", "lmrefinery.cli", "run", str(recipe)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "s3://somebucket/data/*.jsonl" in p.stderr and "no AWS credentials" in p.stderr
