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


# ------------------------------------------------ every compression format streams (issue 19)
import lzma  # noqa: E402

_FORMATS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
    ".xz": lzma.compress,
}
_LINES = [f"line {i} {'x' * (i % 37)}\n".encode() for i in range(3000)]


def _multi(ext: str, lines: list[bytes]) -> bytes:
    """Three members / streams / frames, as Common Crawl, Wikipedia dumps and zstd -T write them."""
    k = len(lines) // 3
    return b"".join(_FORMATS[ext](b"".join(lines[a:b])) for a, b in ((0, k), (k, 2 * k), (2 * k, len(lines))))


@pytest.mark.parametrize("ext", sorted(_FORMATS))
def test_multi_member_streams_iterate_lines_seek_and_read_ranges(tmp_path, ext):
    data = b"".join(_LINES)
    p = tmp_path / f"docs.jsonl{ext}"
    p.write_bytes(_multi(ext, _LINES))
    with storage.open_read(str(p)) as f:
        assert list(f) == _LINES  # readline across member boundaries
    with storage.open_read(str(p)) as f:
        f.seek(len(data) // 2)
        assert f.read(100) == data[len(data) // 2: len(data) // 2 + 100]
        f.seek(10)  # backwards
        assert f.readline() == data[10: data.index(b"\n", 10) + 1]
        assert f.tell() == data.index(b"\n", 10) + 1
        f.seek(-5, 2)
        assert f.read() == data[-5:]


@pytest.mark.parametrize("ext", sorted(_FORMATS))
def test_truncated_and_corrupted_streams_raise_naming_the_file(tmp_path, ext):
    blob = _multi(ext, _LINES)
    cut = tmp_path / f"cut.txt{ext}"
    cut.write_bytes(blob[: len(blob) - 40])
    with storage.open_read(str(cut)) as f, pytest.raises(storage.CompressionError, match="cut.txt.*truncated"):
        f.read()
    bad = bytearray(blob)
    for i in range(len(bad) // 2, len(bad) // 2 + 64):
        bad[i] ^= 0x5A
    broken = tmp_path / f"bad.txt{ext}"
    broken.write_bytes(bytes(bad))
    with storage.open_read(str(broken)) as f, pytest.raises(storage.CompressionError, match="bad.txt"):
        f.read()


@pytest.mark.parametrize("ext", [".zst", ".xz", ".bz2", ".gz"])
def test_compressed_jsonl_and_text_inputs_are_read(tmp_path, ext):
    from lmrefinery.ingest.formats import Record, get_reader

    docs = [f'{{"text": "document number {i} with some words"}}\n'.encode() for i in range(98)]
    p = tmp_path / f"d.jsonl{ext}"
    p.write_bytes(_multi(ext, docs))
    out = list(get_reader("jsonl")({"path": str(p), "rel": p.name, "input": "t", "format": "jsonl",
                                     "fields": {}, "options": {}, "licence": None}))
    assert sum(isinstance(r, Record) for r in out) == 98, out[:3]
    t = tmp_path / f"d.txt{ext}"
    t.write_bytes(_multi(ext, [f"plain line {i}\n".encode() for i in range(30)]))
    out = list(get_reader("text")({"path": str(t), "rel": t.name, "input": "t", "format": "text",
                                    "fields": {}, "options": {}, "licence": None}))
    assert [r.doc["text"] for r in out] == [f"plain line {i}" for i in range(30)]


def test_unfinished_tmp_files_are_never_listed(tmp_path, s3_bucket):
    d = tmp_path / "idx"
    d.mkdir()
    (d / "p00000.parquet").write_bytes(b"x")
    (d / "p00001.parquet.tmp-1a2b3c4d").write_bytes(b"half")
    assert storage.list_files(str(d)) == [str(d / "p00000.parquet")]
    assert storage.list_files(str(d / "*.parquet*")) == [str(d / "p00000.parquet")]
    storage.write_bytes(f"s3://{s3_bucket}/idx/p00000.parquet", b"x")
    storage.write_bytes(f"s3://{s3_bucket}/idx/p00001.parquet.tmp-1a2b3c4d", b"half")
    assert storage.list_files(f"s3://{s3_bucket}/idx/") == [f"s3://{s3_bucket}/idx/p00000.parquet"]


# ------------------------------------------------ S3 faults: a fault-injecting proxy in front of moto (issue 19)
@pytest.fixture
def faulty_s3(s3_server, s3_bucket, monkeypatch):
    from faultproxy import FaultPlan, FaultProxy

    plan = FaultPlan(seed=19)
    with FaultProxy(s3_server, plan) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # storage.s3_client() is keyed by endpoint
        yield plan, f"s3://{s3_bucket}"


def test_s3_read_survives_cut_off_bodies_errors_and_dropped_connections(faulty_s3):
    plan, root = faulty_s3
    data = os.urandom(3 << 20)
    storage.write_bytes(f"{root}/obj.bin", data)
    plan.queue = ["truncate", "503", "drop", "truncate", "500", "slow"]
    assert storage.read_bytes(f"{root}/obj.bin") == data
    assert plan.injected["truncate"] == 2 and not plan.queue
    plan.queue = ["truncate"] * 20  # more cut-offs than attempts: a clear error naming the object
    with pytest.raises(storage.StorageError, match="obj.bin: could not read the whole object"):
        storage.read_bytes(f"{root}/obj.bin")


def test_s3_parquet_and_streams_under_random_faults(faulty_s3):
    plan, root = faulty_s3
    tb = pa.table({"id": [f"d{i}" for i in range(5000)], "text": ["some text " * (i % 9) for i in range(5000)]})
    lines = b"".join(f"line {i}\n".encode() for i in range(20000))
    storage.write_parquet(tb, f"{root}/t.parquet")
    storage.write_bytes(f"{root}/l.txt.zst", zstandard.ZstdCompressor().compress(lines))
    plan.rate = 0.4
    for _ in range(8):
        assert storage.read_parquet(f"{root}/t.parquet").equals(tb)
        with storage.open_read(f"{root}/l.txt.zst") as f:
            assert f.read() == lines
    assert sum(plan.injected.values()) >= 3


def test_s3_large_writes_go_multipart_and_survive_faults(faulty_s3, monkeypatch):
    plan, root = faulty_s3
    monkeypatch.setenv("LMR_S3_MULTIPART_BYTES", str(5 << 20))
    data = os.urandom(11 << 20)
    plan.methods = {"PUT", "POST"}
    plan.queue = ["500", "ok", "503", "drop"]
    storage.write_bytes(f"{root}/big.bin", data)
    plan.methods = set()
    assert storage.stat(f"{root}/big.bin").etag.endswith("-3")  # three parts
    assert storage.read_bytes(f"{root}/big.bin") == data
