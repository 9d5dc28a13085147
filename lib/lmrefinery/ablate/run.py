"""``run_ablation(spec)``: held-out split -> one shared tokenizer -> each curation
variant through the normal Runner -> one model per variant x seed on the same
token budget (``trainer.tokens``) -> perplexity on every held-out group -> the
summary (``summary.py``). Finished variants and models are reused on a re-run."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .curated import load_curated, write_curated
from .heldout import HeldOutSplit, contamination, prepare
from .spec import AblationSpec, Variant

ALWAYS = ("read", "tokenize")


@dataclass
class VariantData:
    name: str
    stages: list[str]
    dataset: str                 # the tokenize stage's folder (dataset.json)
    documents: int
    tokens: int
    by_source: dict
    contaminated: int            # held-out documents found in its decoded training split (must be 0)
    curation_seconds: float


@dataclass
class ModelRun:
    variant: str
    seed: int
    model: str
    steps: int
    trained_tokens: int | None
    final_loss: float | None
    train_seconds: float | None
    eval: dict = field(default_factory=dict)    # group -> PerplexityResult.to_dict()


def log(msg: str) -> None:
    print(f"[ablate] {msg}", file=sys.stderr, flush=True)


def variant_stages(names: list[str], v: Variant) -> list[str]:
    """The recipe's stage names this variant keeps, in the recipe's order."""
    missing = sorted((set(v.stages or []) | set(v.drop)) - set(names))
    if missing:
        raise ValueError(f"variant {v.name}: no stage(s) {missing} in the recipe (stages: {names})")
    if set(v.drop) & set(ALWAYS):
        raise ValueError(f"variant {v.name}: read and tokenize cannot be dropped")
    keep = set(v.stages) | set(ALWAYS) if v.stages is not None else set(names) - set(v.drop)
    return [n for n in names if n in keep]


def variant_recipe(spec: AblationSpec, recipe, v: Variant, split: HeldOutSplit, tok_path: str):
    """The recipe with the decontaminated inputs, the variant's stages and the shared tokenizer."""
    from ..core.recipe import load_recipe

    raw = recipe.model_dump(mode="json")
    raw.pop("source_file", None)
    keep = variant_stages([s["stage"] for s in raw["stages"]], v)
    stages = [s for s in raw["stages"] if s["stage"] in keep]
    for s in stages:
        if s["stage"] == "tokenize":
            s["params"] = dict(s["params"], tokenizer=tok_path, train=None, valid_fraction=0.0)
        if s["stage"] == "read":
            s["params"] = {}
    raw["inputs"] = [{"name": i["name"], "format": "jsonl", "paths": [split.train_files[i["name"]]],
                      "fields": {"text": "text", "url": "url", "title": "title"}, "licence": i.get("licence"),
                      "weight": i.get("weight")} for i in raw["inputs"]]
    raw.update(name=f"{spec.name}-{v.name}", stages=stages, labels=None,
               output=os.path.join(spec.run_dir, "variants", v.name))
    return load_recipe(raw, v.set, label=f"{spec.name}: variant {v.name}"), keep


def shared_tokenizer(spec: AblationSpec, split: HeldOutSplit) -> str:
    """The one tokenizer every variant uses: given, or a byte-level BPE trained on an
    even sample of the (decontaminated, uncurated) training documents of all inputs."""
    from ..tokenize.tokenizer import save_hf, train_bpe

    t = spec.tokenizer
    if t.path:
        return t.path
    out = os.path.join(spec.run_dir, "tokenizer")
    if os.path.exists(os.path.join(out, "tokenizer.json")):
        return out
    docs = []
    for path in split.train_files.values():
        with open(path, encoding="utf-8") as f:
            docs.append([json.loads(line)["text"][:t.max_chars_per_doc] for line in f])
    per = max(1, t.sample_docs // len(docs))
    sample = [d for src in docs for d in src[::max(1, len(src) // per)][:per]]
    return save_hf(train_bpe(sample, vocab_size=t.vocab_size), out)


def curate(spec: AblationSpec, recipe, v: Variant, split: HeldOutSplit, tok_path: str,
           engine: str | None) -> VariantData:
    from ..report.rundata import RunData
    from ..run import run_recipe

    t0 = time.time()
    r, keep = variant_recipe(spec, recipe, v, split, tok_path)
    log(f"variant {v.name}: stages {keep}")
    run_recipe(r, engine=engine, workers=spec.workers, quiet=True)
    st = RunData.open(r.output).stage("tokenize")
    if st is None:
        raise RuntimeError(f"variant {v.name}: no committed tokenize stage in {r.output}")
    with open(os.path.join(st.dir, "dataset.json"), encoding="utf-8") as f:
        ds = json.load(f)
    tr = ds["splits"]["train"]
    return VariantData(v.name, keep, st.dir, tr["documents"], tr["tokens"], tr["by_source"],
                       contamination(split.heldout, decoded_split(st.dir, tok_path)), round(time.time() - t0, 1))


def decoded_split(dataset: str, tok_path: str, split: str = "train") -> list[str]:
    """Every training document of a tokenize output, decoded back to text."""
    from tokenizers import Tokenizer

    from ..evals.perplexity import split_token_docs
    from ..tokenize.tokenizer import load_encoder, tokenizer_json_of

    eos = load_encoder(tok_path).eos_id
    docs = [d[:-1] if len(d) and d[-1] == eos else d for d in split_token_docs(dataset, split)]
    tok = Tokenizer.from_file(tokenizer_json_of(tok_path))
    return tok.decode_batch([d.tolist() for d in docs], skip_special_tokens=False)


def train_recipe(spec: AblationSpec, vd: VariantData, seed: int, tok_path: str):
    from ..train.config import load_train_recipe

    t = spec.train
    trainer = dict(backend=t.backend, workers=t.workers, use_gpu=t.use_gpu, cpus_per_worker=t.cpus_per_worker,
                   micro_batch_size=t.micro_batch_size, grad_accum=t.grad_accum, tokens=t.tokens, lr=t.lr,
                   warmup_steps=t.warmup_steps, seed=seed, log_every=10, eval_every=1_000_000,
                   checkpoint_every=1_000_000, keep_last=1) | t.extra
    return load_train_recipe({
        "name": f"{vd.name}-seed{seed}", "kind": "pretrain", "output": os.path.join(spec.run_dir, "train"),
        "tokenizer": tok_path, "model": {"preset": t.preset, "overrides": t.model_overrides},
        # held-out sets are evaluated after training; no validation split during it
        "data": {"train": vd.dataset, "seq_len": t.seq_len, "valid_split": "none"},
        "trainer": trainer, "logging": {"console": False}})


def train_and_eval(spec: AblationSpec, vd: VariantData, seed: int, tok_path: str, split: HeldOutSplit) -> ModelRun:
    from ..evals.perplexity import load_model, perplexity
    from ..train.trainer import REPORT, run_training

    rec = train_recipe(spec, vd, seed, tok_path)
    rep_path = os.path.join(rec.run_dir, REPORT)
    rep: dict = {}
    if os.path.exists(rep_path):
        with open(rep_path, encoding="utf-8") as f:
            rep = json.load(f)
    if not (rep.get("finished") and rep.get("model")):
        log(f"train {rec.name}: {rec.trainer.max_steps} steps for trainer.tokens={rec.trainer.tokens:,}")
        rep = run_training(rec)
        if not rep.get("finished"):
            raise RuntimeError(f"training {rec.name} did not finish (see {rec.run_dir})")
    run = ModelRun(vd.name, seed, rep["model"], rec.trainer.max_steps, (rep.get("final") or {}).get("tokens"),
                   (rep.get("final") or {}).get("loss"), rep.get("wall_seconds"))
    e = spec.eval
    ctx = e.context or spec.train.seq_len
    stride = e.stride or max(1, ctx // 2)
    # the scores of an unchanged model on unchanged held-out sets are reused on a re-run
    key = {"context": ctx, "stride": stride, "heldout": {g: [r["id"] for r in v] for g, v in split.heldout.items()}}
    cache = os.path.join(rec.run_dir, "ablation_eval.json")
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("key") == key and saved.get("model_step") == rep.get("final", {}).get("step"):
            run.eval = saved["eval"]
            return run
    model, tok = load_model(rep["model"])
    for g in split.heldout:
        res = perplexity(rep["model"], texts=split.texts(g), name=g, context=ctx, stride=stride,
                         batch_tokens=e.batch_tokens, model=model, tok=tok)
        run.eval[g] = res.to_dict()
    with open(cache, "w", encoding="utf-8") as f:
        json.dump({"key": key, "model_step": rep.get("final", {}).get("step"), "eval": run.eval}, f)
    return run


def curate_all(spec: AblationSpec, engine: str | None) -> tuple[HeldOutSplit, str, list[VariantData]]:
    """Held-out split, shared tokenizer and every variant's curation; writes curated.json."""
    from ..core.recipe import load_recipe

    recipe = load_recipe(spec.recipe)
    os.makedirs(spec.run_dir, exist_ok=True)
    split = prepare(spec, recipe, engine)
    log("held out: " + ", ".join(f"{g} {len(v)} docs" for g, v in split.heldout.items()))
    tok_path = shared_tokenizer(spec, split)
    variants = [curate(spec, recipe, v, split, tok_path, engine) for v in spec.variants]
    for vd in variants:
        if vd.contaminated:
            raise RuntimeError(f"variant {vd.name}: {vd.contaminated} held-out documents in its training split")
    write_curated(spec.run_dir, split, tok_path, [asdict(v) for v in variants])
    return split, tok_path, variants


def run_ablation(spec: AblationSpec, engine: str | None = None, phase: str = "all") -> dict:
    """Run the ablation; returns (and writes) ablation.json's content. ``phase``: ``all``;
    ``curate`` (held-out split, tokenizer, variants: curated.json, no training); or ``train``
    (models and evaluation from an earlier ``curate``: needs neither the inputs nor a
    curation engine, e.g. on a GPU machine with ``train.backend=local``)."""
    from .summary import write_outputs

    t0 = time.time()
    engine = engine or spec.engine
    if phase == "train":
        split, tok_path, saved = load_curated(spec)
        variants = [VariantData(**v) for v in saved]
    else:
        split, tok_path, variants = curate_all(spec, engine)
    result: dict[str, Any] = {
              "name": spec.name, "recipe": spec.recipe, "run_dir": spec.run_dir, "baseline": spec.baseline_name,
              "reference": spec.reference,
              "seeds": spec.seeds, "token_budget": spec.train.tokens, "tokenizer": tok_path,
              "spec": spec.model_dump(mode="json"),
              "heldout": {"seed": spec.heldout.seed, "fraction": spec.heldout.fraction,
                          "groups": {g: {"inputs": spec.heldout.groups[g], "docs": len(v),
                                         "chars": sum(len(r["text"]) for r in v)} for g, v in split.heldout.items()},
                          "inputs": split.counts},
              "variants": [asdict(v) for v in variants]}
    if phase == "curate":
        result["wall_seconds"] = round(time.time() - t0, 1)
        return result
    result["runs"] = [asdict(train_and_eval(spec, vd, s, tok_path, split)) for vd in variants for s in spec.seeds]
    result["wall_seconds"] = round(time.time() - t0, 1)
    return write_outputs(result)
