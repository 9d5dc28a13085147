"""End-to-end behaviour of the foundation: engines, determinism, S3, resume,
accounting and bad input."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import upload_dir
from lmrefinery.core import manifest as mf
from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
from lmrefinery.run import run_recipe
from lmrefinery.samples.generate import plan_web_docs

CORE_STAGES = [{"stage": "read"}, {"stage": "clean"}, {"stage": "length_filter", "min_chars": 50},
               {"stage": "exact_dedup", "by_url": True}]


def make_corpus(d, files=4, docs=30, seed=1):
    os.makedirs(d, exist_ok=True)
    all_docs = plan_web_docs(seed, files * docs, "t")
    for i in range(files):
        with open(os.path.join(d, f"shard-{i:03d}.jsonl"), "w", encoding="utf-8") as f:
            for doc in all_docs[i::files]:
                f.write(json.dumps({"url": doc["url"], "title": doc["title"], "text": doc["text"]},
                                   ensure_ascii=False) + "\n")
    return d


def recipe(inp, out, engine="ray", workers=2, stages=None):
    return load_recipe({"name": "t", "output": out, "engine": engine, "resources": {"workers": workers},
                        "inputs": [{"name": "web", "paths": [f"{inp}/*.jsonl"]}],
                        "stages": stages or CORE_STAGES, "report": True})


def checksums(out):
    """Every committed output and reject file of every stage, with its checksum."""
    res = {}
    for sdir in sorted(storage.list_files(f"{out}/stages") if storage.is_s3(out) else
                       [os.path.join(out, "stages", d, "_manifest.json") for d in sorted(os.listdir(f"{out}/stages"))]):
        if not sdir.endswith("_manifest.json"):
            continue
        m = json.loads(storage.read_bytes(sdir))
        name = f"{m['index']:02d}-{m['stage']}"
        res[name] = {"outputs": [(o["path"], o["rows"], o["sha256"]) for o in m["outputs"]],
                     "rejects": [(o["path"], o["rows"], o["sha256"]) for o in m["rejects"]],
                     "counts": m["counts"]}
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("corpus")))


@pytest.fixture(scope="module")
def ray_two_workers(ray_cluster, corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ray2"))
    stats = run_recipe(recipe(corpus, out, workers=2), quiet=True)   # with the report
    return out, stats


def test_accounting_and_outputs(ray_two_workers):
    out, stats = ray_two_workers
    assert [s["stage"] for s in stats["stages"]] == ["read", "clean", "length_filter", "exact_dedup"]
    prev_kept = None
    for s in stats["stages"]:
        assert s["in"] == s["kept"] + sum(s["rejected"].values())
        if prev_kept is not None:
            assert s["in"] == prev_kept
        prev_kept = s["kept"]
    dd = stats["stages"][3]
    assert dd["rejected"].get("exact_duplicate", 0) >= 1
    assert stats["stages"][2]["rejected"].get("too_short", 0) >= 1
    on_disk = json.load(open(os.path.join(out, "stats.json")))
    assert on_disk["stages"][3]["kept"] == dd["kept"]
    assert os.path.exists(os.path.join(out, "report", "index.html"))
    # rejects are inspectable, with their reason, and the duplicate names its keeper
    m = mf.read_manifest(os.path.join(out, "stages", "03-exact_dedup"))
    rej = [storage.read_parquet(os.path.join(out, "stages", "03-exact_dedup", r["path"])) for r in m["rejects"]]
    rows = [row for t in rej for row in t.to_pylist()]
    assert rows and all(r["reject_reason"] in ("exact_duplicate", "url_duplicate") and r["duplicate_of"] for r in rows)
    kept_ids = {i for o in m["outputs"]
                for i in storage.read_parquet(os.path.join(out, "stages", "03-exact_dedup", o["path"])).column("id").to_pylist()}
    assert all(r["duplicate_of"] in kept_ids for r in rows)


def test_one_and_two_ray_workers_identical(ray_two_workers, corpus, tmp_path):
    out2, _ = ray_two_workers
    out1 = str(tmp_path / "ray1")
    Runner(recipe(corpus, out1, workers=1), quiet=True).run()
    assert checksums(out1) == checksums(out2)


def _stage_files(out: str) -> dict[str, object]:
    """Every file under stages/ with its bytes; manifests and part markers without their
    timings (the only fields that may differ between two runs of the same work)."""
    got: dict[str, object] = {}
    root = os.path.join(out, "stages")
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            rel = os.path.relpath(path, root)
            if f.endswith(".json"):
                m = json.load(open(path))
                got[rel] = {k: v for k, v in m.items() if k not in mf.VOLATILE + ("started", "recipe")}  # recipe: has the output path
            else:
                got[rel] = open(path, "rb").read()
    return got


def test_fused_map_stages_write_what_unfused_stages_write(ray_cluster, corpus, tmp_path):
    """read -> clean -> length_filter -> lid -> quality (web only) -> pii run fused in one task per
    part on Ray; one by one on the local engine. Every part file, reject file, marker and
    manifest is the same, and each stage reports its own share of the time."""
    stages = [{"stage": "read"}, {"stage": "clean"}, {"stage": "length_filter", "min_chars": 50},
              {"stage": "lid"}, {"stage": "quality", "sources": ["web"]}, {"stage": "pii"},
              {"stage": "exact_dedup", "by_url": True}]
    fused = recipe(corpus, str(tmp_path / "fused"), stages=stages)
    assert fused.resources.fuse
    one_by_one = recipe(corpus, str(tmp_path / "unfused"), engine="local", stages=stages)
    one_by_one.resources.fuse = False
    a = Runner(fused, quiet=True).run()
    b = Runner(one_by_one, quiet=True).run()
    assert [s["stage"] for s in a["stages"]] == [s["stage"] for s in b["stages"]]
    fa, fb = _stage_files(a["output"]), _stage_files(b["output"])
    assert sorted(fa) == sorted(fb) and len(fa) > 40
    assert [k for k in fa if fa[k] != fb[k]] == []
    assert all(s["seconds"] > 0 for s in a["stages"])
    assert a["stages"][0]["fused_with"] == ["clean", "length_filter", "lid", "quality", "pii"]
    assert "fused_with" not in a["stages"][6] and not any("fused_with" in s for s in b["stages"])
    # a re-run of the fused recipe reuses everything
    again = Runner(recipe(corpus, str(tmp_path / "fused"), stages=stages), quiet=True).run()
    assert all(s["skipped"] for s in again["stages"])


def test_spark_matches_ray(ray_two_workers, corpus, spark, tmp_path):
    out_ray, _ = ray_two_workers
    out_spark = str(tmp_path / "spark")
    stats = Runner(recipe(corpus, out_spark, engine="spark"), quiet=True).run()
    assert stats["engine"] == "spark"
    assert checksums(out_spark) == checksums(out_ray)


def test_s3_input_and_output_match_local(ray_two_workers, corpus, s3_bucket):
    out_local, _ = ray_two_workers
    upload_dir(corpus, s3_bucket, "in/web")
    out = f"s3://{s3_bucket}/out"
    run_recipe(recipe(f"s3://{s3_bucket}/in/web", out), quiet=True)
    assert checksums(out) == checksums(out_local)
    assert storage.exists(f"{out}/report/index.html") and storage.exists(f"{out}/stats.json")


def test_rerun_skips_and_change_reruns_downstream(ray_cluster, corpus, tmp_path):
    out = str(tmp_path / "o")
    Runner(recipe(corpus, out), quiet=True).run()
    again = Runner(recipe(corpus, out), quiet=True).run()
    assert not again["did_work"] and all(s["skipped"] for s in again["stages"])
    stages = [dict(s) for s in CORE_STAGES]
    stages[2] = {"stage": "length_filter", "min_chars": 400}
    changed = Runner(recipe(corpus, out, stages=stages), quiet=True).run()
    assert [s["skipped"] for s in changed["stages"]] == [True, True, False, False]
    # a changed input re-runs from read
    with open(os.path.join(corpus, "shard-000.jsonl"), "a") as f:
        f.write(json.dumps({"url": "https://new.example/1", "text": "A brand new document " * 10}) + "\n")
    changed2 = Runner(recipe(corpus, out, stages=stages), quiet=True).run()
    assert not any(s["skipped"] for s in changed2["stages"])
    assert changed2["stages"][0]["in"] == changed["stages"][0]["in"] + 1


def _run_cli(recipe_path, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "lmrefinery.cli", "run", recipe_path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_sigkill_mid_stage_then_resume_equals_clean_run(tmp_path):
    inp = make_corpus(str(tmp_path / "in"), files=24, docs=25, seed=7)
    rec = {"name": "t", "engine": "local", "inputs": [{"name": "web", "paths": [f"{inp}/*.jsonl"]}],
           "stages": CORE_STAGES, "report": False}
    import yaml

    clean_out, crash_out = str(tmp_path / "clean"), str(tmp_path / "crash")
    for out in (clean_out, crash_out):
        with open(tmp_path / f"{os.path.basename(out)}.yaml", "w") as f:
            yaml.safe_dump({**rec, "output": out}, f)
    p = _run_cli(str(tmp_path / "clean.yaml"))
    assert p.wait(300) == 0, p.stderr.read()

    # kill the second run while its `clean` stage has committed some parts but not all
    p = _run_cli(str(tmp_path / "crash.yaml"))
    parts_dir = os.path.join(crash_out, "stages", "01-clean", "_parts")
    deadline = time.time() + 240
    while time.time() < deadline:
        if os.path.isdir(parts_dir) and len(os.listdir(parts_dir)) >= 2:
            break
        if p.poll() is not None:
            pytest.fail("run finished before it could be killed: " + p.stderr.read())
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    assert not os.path.exists(os.path.join(crash_out, "stages", "01-clean", "_manifest.json"))
    assert len(os.listdir(parts_dir)) < 24

    p = _run_cli(str(tmp_path / "crash.yaml"))
    assert p.wait(300) == 0, p.stderr.read()
    assert checksums(crash_out) == checksums(clean_out)
    m = mf.read_manifest(os.path.join(crash_out, "stages", "01-clean"))
    assert 0 < m["skipped_parts"] < 24  # the parts committed before the kill were not redone

    p = _run_cli(str(tmp_path / "crash.yaml"))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0
    assert "Nothing to do" in out
    assert err.count("up to date") == len(CORE_STAGES)


def test_bad_input_is_quarantined_with_reasons(ray_cluster, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    good = [json.dumps({"text": f"Good document number {i}. " * 5}) for i in range(5)]
    # a gzip file cut short: the records before the break are kept
    payload = ("\n".join(good) + "\n").encode() * 40
    blob = gzip.compress(payload)
    (d / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    lines = [good[0].encode(), b'{"text": "bad \xff\xfe bytes"}', b"{not json", json.dumps({"body": "no text"}).encode(),
             b"[1, 2]", good[1].encode(), b"", json.dumps({"text": ""}).encode()]
    (d / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = str(tmp_path / "out")
    rec = load_recipe({"name": "bad", "output": out, "inputs": [{"name": "x", "paths": [f"{d}/*"]}],
                       "stages": [{"stage": "read"}, {"stage": "clean"}, {"stage": "length_filter", "min_chars": 1}]})
    stats = Runner(rec, quiet=True).run()
    read = stats["stages"][0]["rejected"]
    assert read["invalid_utf8"] == 1 and read["malformed_json"] == 1 and read["missing_field:text"] == 1
    assert read["not_an_object"] == 1 and read["corrupt_compression"] == 1
    assert stats["stages"][0]["kept"] > 2 + 5  # mixed.jsonl's good lines + the gzip's readable prefix
    assert stats["stages"][1]["rejected"] == {"empty_after_clean": 1}
    m = mf.read_manifest(os.path.join(out, "stages", "00-read"))
    rows = [r for f in m["rejects"] for r in storage.read_parquet(os.path.join(out, "stages", "00-read", f["path"])).to_pylist()]
    by = {r["reject_reason"]: json.loads(r["meta"]) for r in rows}
    assert by["corrupt_compression"]["file"] == "truncated.jsonl.gz" and "offset" in by["corrupt_compression"]
    assert by["malformed_json"]["pos"] == "line:2" and "mixed.jsonl" in by["malformed_json"]["error"]
