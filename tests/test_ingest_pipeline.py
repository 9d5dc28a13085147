"""The read stage end to end: real files from disk and from the local S3 server
(moto) on Ray, byte-range splitting, the extraction timeout inside Ray workers,
and the input ledger behind `run --new-only`."""
from __future__ import annotations

import json
import os

import pyarrow as pa

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
from lmrefinery.ingest.formats import Record, get_reader
from lmrefinery.ingest.split import plan_read_tasks

FILES = {
    "web": ["web/cc-main-2020-34-resiliparse-sample.warc.gz", "web/cc-main-2024-22-whirlwind.warc.wet.gz"],
    "wiki": ["wiki/enwiki-table-markup.xml.bz2"],
    "books": ["books/pg11_alice_in_wonderland_en.txt"],
    "seeds": ["instructions/self_instruct_seed_tasks.jsonl"],
    "c4": ["web/c4_demo.jsonl"],
}


def _recipe(root: str, out: str, engine: str = "ray") -> dict:
    j = lambda *p: "/".join([root, *p])  # noqa: E731 - works for s3:// and local paths
    return {
        "name": "ingest-e2e", "output": out, "engine": engine, "report": False, "resources": {"workers": 2},
        "inputs": [
            {"name": "web", "format": "warc", "paths": [j("web", "*.warc*.gz")]},
            {"name": "wiki", "format": "mediawiki", "paths": [j("wiki", "enwiki-table-markup.xml.bz2")]},
            {"name": "books", "format": "gutenberg", "paths": [j("books", "*.txt")], "options": {"max_chars": 40000}},
            {"name": "seeds", "format": "self_instruct", "paths": [j("instructions", "*.jsonl")],
             "licence": "Apache-2.0"},
            {"name": "c4", "format": "jsonl", "paths": [j("web", "c4_demo.jsonl")],
             "options": {"split_bytes": 200_000}},
            {"name": "slow", "format": "warc", "paths": [j("web", "cc-main-2020-34-*.warc.gz")],
             "options": {"timeout_s": 0.0005}},
        ],
        "stages": [{"stage": "read"}],
    }


def _stage_tables(out: str):
    sdir = storage.join(out, "stages", "00-read")
    m = json.loads(storage.read_bytes(storage.join(sdir, "_manifest.json")))
    kept = pa.concat_tables([storage.read_parquet(storage.join(sdir, o["path"])) for o in m["outputs"]])
    rej = pa.concat_tables([storage.read_parquet(storage.join(sdir, o["path"])) for o in m["rejects"]],
                           promote_options="permissive")
    return m, kept, rej


def _comparable(kept, rej):
    rows = sorted((r["id"], r["source"], r["text"], r["url"], r["title"], r["lang"], r["meta"])
                  for r in kept.to_pylist() if r["source"] != "slow")
    bad = sorted((r["id"], r["reject_reason"]) for r in rej.to_pylist() if r["source"] != "slow")
    return rows, bad


def test_local_and_s3_inputs_give_identical_outputs_on_ray(ray_cluster, s3_bucket, shared_corpora, tmp_path):
    from conftest import upload_dir  # noqa: F401 - the same helper other tests use

    s3 = storage.s3_client()
    local = tmp_path / "in"
    for group in FILES.values():
        for rel in group:
            s3.upload_file(os.path.join(shared_corpora, rel), s3_bucket, f"corpora/{rel}")
            os.makedirs(local / os.path.dirname(rel), exist_ok=True)
            os.symlink(os.path.join(shared_corpora, rel), local / rel)  # read in place, never copied
    out_local = str(tmp_path / "out")
    out_s3 = f"s3://{s3_bucket}/runs/e2e"
    a = Runner(load_recipe(_recipe(str(local), out_local)), quiet=True).run()
    b = Runner(load_recipe(_recipe(f"s3://{s3_bucket}/corpora", out_s3)), quiet=True).run()
    ma, ka, ra = _stage_tables(out_local)
    mb, kb, rb = _stage_tables(out_s3)
    rows, bad = _comparable(ka, ra)
    assert (rows, bad) == _comparable(kb, rb)  # the timed-out input ("slow") is timing-dependent: left out
    assert len(rows) > 480 and a["stages"][0]["in"] == b["stages"][0]["in"]

    # one task per object, c4_demo.jsonl (747 KB) in 4 byte ranges
    descs = [p["path"] for p in ma["inputs"]]
    assert sum(1 for d in descs if d.startswith("c4:c4_demo.jsonl@")) == 4
    assert len(ma["outputs"]) == len(descs) == len(mb["outputs"])
    c4 = [r for r in ka.to_pylist() if r["source"] == "c4"]
    expected = [json.loads(ln)["text"] for ln in open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"))]
    assert [r["text"] for r in c4] == expected  # ranges in order, every line once

    # counts by reason, per input, in the manifest
    counters = ma["counters"]
    # the resiliparse sample is read by two inputs ("web" and "slow"): 17 requests, 16 metadata each
    assert counters["skipped:warc_request"] == 2 * 17 and counters["skipped:warc_metadata"] == 2 * 16
    by_src = {}
    for r in ka.to_pylist():
        by_src[r["source"]] = by_src.get(r["source"], 0) + 1
    assert by_src["wiki"] == 5 and by_src["seeds"] == 175 and by_src["books"] >= 4
    seeds = [json.loads(r["meta"]) for r in ka.to_pylist() if r["source"] == "seeds"]
    assert all(s["licence"] == "Apache-2.0" and s["kind"] == "conversation" for s in seeds)

    # the per-document extraction timeout fires inside Ray workers (signal on the worker's main thread)
    slow = [r["reject_reason"] for r in ra.to_pylist() if r["source"] == "slow"]
    slow_kept = sum(1 for r in ka.to_pylist() if r["source"] == "slow")
    # 0.5 ms of CPU: most pages are cut, a page that extracts faster is kept; none is lost
    assert slow.count("extract_timeout") >= 8 and slow.count("extract_timeout") + slow_kept == 16
    # nothing lost: quarantined rows carry the file and the position
    for r in ra.to_pylist():
        m = json.loads(r["meta"])
        assert m["file"] and m["pos"]


def test_jsonl_byte_ranges_match_a_whole_read(shared_corpora):
    path = os.path.join(shared_corpora, "web", "c4_demo.jsonl")
    f = {"path": path, "format": "jsonl", "size": os.path.getsize(path), "options": {"split_bytes": 65_536}}
    plan = plan_read_tasks([f])
    assert plan == plan_read_tasks([f]) and len(plan) == 12
    assert [p["range"][0] for p in plan] == [k * 65_536 for k in range(12)]
    whole = [i.doc["text"] for i in get_reader("jsonl")(dict(f, rel="c4", fields={}))]
    parts = []
    for p in plan:
        parts += [i.doc["text"] for i in get_reader("jsonl")(dict(p, rel="c4", fields={})) if isinstance(i, Record)]
    assert parts == whole and len(whole) == 300
    # compressed or small objects stay whole
    assert len(plan_read_tasks([dict(f, path=path + ".gz")])) == 1
    assert len(plan_read_tasks([dict(f, options={})])) == 1


def test_default_split_gives_a_mid_size_file_ranges_for_every_worker(shared_corpora, tmp_path):
    # ~20 MB of real JSON Lines (the C4 sample 27 times): 3 ranges of 8 MiB by default, the plan a
    # function of the file alone (no worker count goes in), and the ranges read the whole file
    src = open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), "rb").read()
    path = str(tmp_path / "big.jsonl")
    with open(path, "wb") as f:
        f.write(src * 27)
    f = {"path": path, "format": "jsonl", "size": os.path.getsize(path), "options": {}}
    plan = plan_read_tasks([f])
    assert [p["range"] for p in plan] == [[0, 8 << 20], [8 << 20, 16 << 20], [16 << 20, len(src) * 27]]
    n = sum(1 for p in plan for i in get_reader("jsonl")(dict(p, rel="big", fields={})) if isinstance(i, Record))
    assert n == 300 * 27


def test_new_only_reads_only_objects_not_in_the_ledger(tmp_path):
    from lmrefinery.cli import main
    from lmrefinery.ingest.ledger import Ledger, default_location

    src = tmp_path / "in"
    src.mkdir()

    def write(name, n, tag):
        (src / name).write_text("".join(json.dumps({"text": f"{tag} document {i}"}) + "\n" for i in range(n)))

    write("a.jsonl", 3, "a")
    write("b.jsonl", 4, "b")
    out = tmp_path / "out"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"name": "nightly", "output": str(out), "engine": "local", "report": False,
                                  "inputs": [{"name": "docs", "format": "jsonl", "paths": [str(src / "*.jsonl")]}],
                                  "stages": [{"stage": "read"}]}))

    def read_in():
        return json.loads((out / "stats.json").read_text())

    assert main(["run", str(recipe), "--quiet"]) == 0
    led = Ledger(default_location(str(out)))
    assert sorted(os.path.basename(p) for p in led.entries) == ["a.jsonl", "b.jsonl"]
    assert main(["run", str(recipe), "--quiet", "--new-only"]) == 0
    assert read_in()["nothing_new"] is True
    write("c.jsonl", 2, "c")
    assert main(["run", str(recipe), "--quiet", "--new-only"]) == 0
    st = read_in()
    assert st["stages"][0]["in"] == 2 and st["new_inputs_recorded"] == 1
    write("a.jsonl", 5, "a2")  # rewritten in place: a new version of the object
    os.utime(src / "a.jsonl", ns=(1, 1))
    assert main(["run", str(recipe), "--quiet", "--new-only"]) == 0
    assert read_in()["stages"][0]["in"] == 5
    # an explicit shared ledger (one output folder per scheduled run)
    shared = str(tmp_path / "ledger.json")
    assert main(["run", str(recipe), "--quiet", "--new-only", "--ledger", shared]) == 0
    assert read_in()["stages"][0]["in"] == 5 + 4 + 2 and len(Ledger(shared).entries) == 3
