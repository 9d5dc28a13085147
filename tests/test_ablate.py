"""`lmrefinery ablate` end to end at tiny scale on real text (C4, Wikipedia plain text,
Alice in Wonderland): 2 curation variants x 2 seeds on local Ray, one shared tokenizer,
equal token budgets, held-out docs decontaminated from every variant."""
from __future__ import annotations

import json
import math
import os

import pytest
import yaml

STEPS = 12
SEQ = 64
MBS = 8


def _read(*parts: str) -> str:
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def ablation(ray_cluster, shared_corpora, tmp_path_factory):
    from lmrefinery.ablate.run import run_ablation
    from lmrefinery.ablate.spec import load_spec

    root = tmp_path_factory.mktemp("ablate")
    wiki = root / "wiki.jsonl"   # 14 articles, cut to 6,000 characters (the file stays where it is)
    with open(os.path.join(shared_corpora, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        wiki.write_text("".join(json.dumps({"text": line[:6000]}) + "\n" for line in f.read().splitlines()[:14]))
    web = root / "web.jsonl"
    with open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        web.write_text("".join(f.readlines()[:120]))
    alice = os.path.join(shared_corpora, "books", "pg11_alice_in_wonderland_en.txt")
    recipe = {"name": "tiny", "output": str(root / "unused"), "engine": "ray", "resources": {"workers": 2},
              "inputs": [{"name": "web", "format": "jsonl", "paths": [str(web)]},
                         {"name": "wiki", "format": "jsonl", "paths": [str(wiki)]},
                         {"name": "books", "format": "gutenberg", "paths": [alice], "options": {"max_chars": 6000}}],
              "stages": [{"stage": "read"}, {"stage": "clean"}, {"stage": "length_filter", "min_chars": 200},
                         {"stage": "quality"}, {"stage": "exact_dedup"},
                         {"stage": "tokenize", "shard_tokens": 50000, "valid_fraction": 0.05,
                          "train": {"vocab_size": 500, "sample_docs": 100}}]}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    spec = {"name": "abl", "recipe": "recipe.yaml", "output": str(root / "runs"), "baseline": "raw",
            "variants": [{"name": "raw", "stages": ["read"]}, {"name": "default"}],
            "seeds": [0, 1],
            "heldout": {"seed": 3, "fraction": 0.15, "groups": {"clean": ["wiki", "books"], "web": ["web"]}},
            "tokenizer": {"vocab_size": 700, "sample_docs": 300},
            "train": {"preset": "tiny", "seq_len": SEQ, "tokens": STEPS * MBS * SEQ - 5, "workers": 1,
                      "micro_batch_size": MBS, "warmup_steps": 2}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    yield run_ablation(load_spec(str(root / "spec.yaml"))), root
    _remove_leftover_placement_groups()


def _remove_leftover_placement_groups() -> None:
    """Four Ray Train runs on the session cluster: under load Ray Train's own cleaner can miss a
    run's placement group ("Failed to query Ray Train Controller actor state"), which then holds
    a CPU for the rest of the session and starves later tests' actor pools."""
    import ray
    from ray.util import placement_group_table, remove_placement_group
    from ray.util.placement_group import PlacementGroup

    if not ray.is_initialized():
        return
    for pg_id, info in placement_group_table().items():
        if info.get("state") == "CREATED":
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))


@pytest.mark.slow
def test_ablate_writes_one_row_per_variant_seed_with_finite_perplexity(ablation):
    result, _ = ablation
    run = result["run_dir"]
    saved = json.loads(_read(run, "ablation.json"))
    assert saved["summary"] == result["summary"]
    runs = {(r["variant"], r["seed"]): r for r in saved["runs"]}
    assert sorted(runs) == [("default", 0), ("default", 1), ("raw", 0), ("raw", 1)]
    for r in runs.values():
        # equal budget: ceil(tokens / tokens per step) steps, each of MBS x SEQ tokens
        assert r["steps"] == STEPS and r["trained_tokens"] == STEPS * MBS * SEQ
        assert set(r["eval"]) == {"clean", "web"}
        for e in r["eval"].values():
            assert e["docs"] > 0 and e["tokens"] > 100 and math.isfinite(e["ppl"]) and e["ppl"] > 1
            assert e["context"] == SEQ and e["stride"] == SEQ // 2
    # seeds train different models; the same held-out docs are scored for every model
    assert runs[("raw", 0)]["eval"]["clean"]["nll"] != runs[("raw", 1)]["eval"]["clean"]["nll"]
    assert len({r["eval"]["clean"]["tokens"] for r in runs.values()}) == 1
    rows = {(s["variant"], s["group"]): s for s in saved["summary"]}
    assert set(rows) == {(v, g) for v in ("raw", "default") for g in ("clean", "web")}
    d = rows[("default", "clean")]
    assert d["delta_vs_baseline"] == pytest.approx(d["nats_per_token"] - rows[("raw", "clean")]["nats_per_token"])
    assert d["spread"] == pytest.approx(abs(runs[("default", 0)]["eval"]["clean"]["nats_per_token"]
                                            - runs[("default", 1)]["eval"]["clean"]["nats_per_token"]))
    table = _read(run, "ablation.txt")
    assert table.count("\nraw ") + table.count("\ndefault ") == 8      # run lines: variant x seed x group
    assert f"{d['delta_vs_baseline']:+.4f}" in next(x for x in table.splitlines() if x.startswith("clean      default"))
    fig = json.loads(_read(run, "ablation_figure.json"))
    assert next(t["x"] for t in fig["data"] if t["type"] == "bar") == ["raw", "default"]
    assert "Plotly.newPlot" in _read(run, "report", "ablation.html")


@pytest.mark.slow
def test_variants_differ_and_share_one_tokenizer(ablation):
    result, _ = ablation
    v = {x["name"]: x for x in result["variants"]}
    assert v["raw"]["stages"] == ["read", "tokenize"]
    assert v["default"]["stages"] == ["read", "clean", "length_filter", "quality", "exact_dedup", "tokenize"]
    assert v["default"]["documents"] < v["raw"]["documents"]          # the filters removed something
    from lmrefinery.tokenize.tokenizer import file_sha256

    shas = {json.loads(_read(x["dataset"], "dataset.json"))["tokenizer"]["sha256"] for x in v.values()}
    assert shas == {file_sha256(os.path.join(result["tokenizer"], "tokenizer.json"))}


@pytest.mark.slow
def test_heldout_docs_absent_from_every_variants_training_text(ablation):
    from lmrefinery.ablate.heldout import norm
    from lmrefinery.ablate.run import decoded_split

    result, _ = ablation
    run = result["run_dir"]
    held = {}
    for g in ("clean", "web"):
        held[g] = [json.loads(x) for x in _read(run, "heldout", f"{g}.jsonl").splitlines()]
        assert held[g], g
    assert {r["source"] for r in held["clean"]} <= {"wiki", "books"} and {r["source"] for r in held["web"]} == {"web"}
    texts = {norm(r["text"]) for g in held.values() for r in g}
    for x in result["variants"]:
        assert x["contaminated"] == 0
        train = decoded_split(x["dataset"], result["tokenizer"])
        assert len(train) == x["documents"] > 20
        assert not texts & {norm(t) for t in train}
        # and no held-out paragraph hides inside a longer training document
        joined = "\n".join(train)
        assert not [t for t in texts if t[:200] in joined]
    # the raw variant trained on everything else the recipe read
    counts = result["heldout"]["inputs"]
    assert sum(c["train"] for c in counts.values()) == next(x for x in result["variants"]
                                                           if x["name"] == "raw")["documents"]


@pytest.mark.slow
def test_ablate_in_two_phases_without_ray_gives_the_same_table(ablation, tmp_path):
    """The way to run it on a GPU machine without Ray, in a Python where `import ray`
    fails: `--phase curate` on the local engine, copy_curated() of its run folder to
    another place (the first one is then deleted), `--phase train` there with
    train.backend=local. Same variants, same token streams, same held-out perplexity as
    the all-in-one run on Ray."""
    import subprocess
    import sys

    result, root = ablation
    spec = str(root / "spec.yaml")
    code = f"""import shutil, sys
sys.modules['ray'] = None
from lmrefinery.ablate.curated import copy_curated
from lmrefinery.cli import main
base = ['ablate', {spec!r}, '--set', 'seeds=[0]', '--set', 'train.backend=local']
assert main(base + ['--engine', 'local', '--phase', 'curate', '--set', 'output={tmp_path}/here']) == 0
files = copy_curated('{tmp_path}/here/abl', '{tmp_path}/gpu/abl')
assert any(f.endswith('.bin') for f in files) and not any(f.startswith(('inputs', 'source')) for f in files)
shutil.rmtree('{tmp_path}/here')
sys.exit(main(base + ['--phase', 'train', '--set', 'output={tmp_path}/gpu']))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    local = json.loads(_read(str(tmp_path), "gpu", "abl", "ablation.json"))
    for name in ("raw", "default"):
        a = next(v for v in result["variants"] if v["name"] == name)
        b = next(v for v in local["variants"] if v["name"] == name)
        assert (a["documents"], a["tokens"]) == (b["documents"], b["tokens"]), name
        ray_run = next(r for r in result["runs"] if r["variant"] == name and r["seed"] == 0)
        local_run = next(r for r in local["runs"] if r["variant"] == name and r["seed"] == 0)
        assert local_run["final_loss"] == pytest.approx(ray_run["final_loss"], abs=2e-5), name
        for g, ev in ray_run["eval"].items():
            assert local_run["eval"][g]["nats_per_token"] == pytest.approx(ev["nats_per_token"], abs=2e-5), (name, g)


def test_train_phase_needs_a_curated_run_folder(tmp_path):
    from lmrefinery.ablate.run import run_ablation
    from lmrefinery.ablate.spec import load_spec
    from lmrefinery.core.recipe import RecipeError

    spec = load_spec({"name": "a", "recipe": "r.yaml", "output": str(tmp_path), "variants": [{"name": "x"}],
                      "heldout": {"groups": {"web": ["web"]}}, "train": {"tokens": 1000}})
    with pytest.raises(RecipeError, match="--phase curate"):
        run_ablation(spec, phase="train")


def test_spec_errors_name_the_problem(tmp_path):
    from lmrefinery.ablate.run import variant_stages
    from lmrefinery.ablate.spec import Variant, load_spec
    from lmrefinery.core.recipe import RecipeError

    base = {"name": "a", "recipe": "r.yaml", "output": str(tmp_path), "variants": [{"name": "x"}],
            "heldout": {"groups": {"web": ["web"]}}, "train": {"tokens": 1000}}
    with pytest.raises(RecipeError, match="baseline"):
        load_spec(dict(base, baseline="nope"))
    with pytest.raises(RecipeError, match="tokens"):
        load_spec(dict(base, train={}))
    names = ["read", "clean", "quality", "tokenize"]
    assert variant_stages(names, Variant(name="q", drop=["quality"])) == ["read", "clean", "tokenize"]
    with pytest.raises(ValueError, match="no stage"):
        variant_stages(names, Variant(name="q", drop=["qualty"]))
    with pytest.raises(ValueError, match="cannot be dropped"):
        variant_stages(names, Variant(name="q", drop=["tokenize"]))


def test_shipped_spec_names_stages_and_inputs_of_its_recipe():
    from lmrefinery.ablate.run import variant_stages
    from lmrefinery.ablate.spec import load_spec
    from lmrefinery.core.recipe import load_recipe

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = load_spec(os.path.join(root, "conf", "ablate", "mini.yaml"))
    recipe = load_recipe(spec.recipe)
    names = [s.stage for s in recipe.stages]
    kept = {v.name: variant_stages(names, v) for v in spec.variants}
    assert kept["raw"] == ["read", "tokenize"] and kept["default"] == names
    assert "quality" not in kept["no_quality"] and len(kept["no_quality"]) == len(names) - 1
    inputs = {i.name for i in recipe.inputs}
    assert {n for g in spec.heldout.groups.values() for n in g} == inputs
