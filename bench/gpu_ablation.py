"""The ablation at 125M scale on one GPU (issue 14): the curation variants that
`lmrefinery ablate` (bench/ablation.py) produced on CPU, each trained at an equal token
budget with two seeds, evaluated on the same decontaminated held-out sets.

Superseded by bench/gpu_ablate.sh, which runs `lmrefinery ablate --phase train` itself on the
GPU machine (train.backend=local needs no Ray); this script produced
bench/results/gpu_ablation.json before that existed, from a run folder of
`bench/ablation.py --phase curate`. Two steps, because the GPU machine has PyTorch and
transformers but not Ray:

    python bench/gpu_ablation.py prepare RUN_DIR OUT   # here: token streams of every variant
                                                         # (the shared tokenizer), held-out docs
    python bench/gpu_ablation.py train OUT [--preset 125m] [--epochs 4] [--seeds 0 1]   # on the GPU

`train` runs the same Llama preset the trainer builds (lib/lmrefinery/train/model.py) with
a plain single-GPU loop (bf16 autocast, fused AdamW, cosine schedule): the budget is the
largest equal one the corpora allow with at most `--epochs` passes over the smallest
variant. Perplexity: every held-out document alone, windows of seq_len with stride seq_len/2,
each token scored once, token-weighted. Writes OUT/gpu_ablation.json (copy it to
bench/results/)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.join(ROOT, "bench")]
sys.path.insert(0, os.path.join(ROOT, "lib"))

import numpy as np  # noqa: E402


def prepare(run_dir: str, out: str) -> None:
    import glob

    from transformers import PreTrainedTokenizerFast

    from lmrefinery.evals.perplexity import encode_texts, split_token_docs

    os.makedirs(out, exist_ok=True)
    tok = PreTrainedTokenizerFast.from_pretrained(os.path.join(run_dir, "tokenizer"))
    meta = {"vocab_size": len(tok), "eos_id": tok.eos_token_id, "variants": {}, "heldout": {},
            "source_run": run_dir}
    for dataset in sorted(glob.glob(os.path.join(run_dir, "variants", "*", "stages", "*-tokenize", "dataset.json"))):
        name = dataset.split(os.sep)[-4]
        docs = split_token_docs(dataset, "train")
        stream = np.concatenate(docs).astype(np.uint16 if len(tok) < 65536 else np.uint32)
        np.save(os.path.join(out, f"train_{name}.npy"), stream)
        meta["variants"][name] = {"documents": len(docs), "tokens": int(stream.size)}
    for path in sorted(glob.glob(os.path.join(run_dir, "heldout", "*.jsonl"))):
        g = os.path.basename(path)[:-len(".jsonl")]
        rows = [json.loads(line) for line in open(path, encoding="utf-8")]
        docs = encode_texts(tok, [r["text"] for r in rows])
        np.save(os.path.join(out, f"heldout_{g}.npy"), np.concatenate(docs).astype(np.uint16 if len(tok) < 65536
                                                                                    else np.uint32))
        np.save(os.path.join(out, f"heldout_{g}_lengths.npy"), np.array([len(d) for d in docs], np.int64))
        meta["heldout"][g] = {"documents": len(docs), "tokens": int(sum(len(d) for d in docs))}
    json.dump(meta, open(os.path.join(out, "meta.json"), "w"), indent=1)
    print(json.dumps(meta, indent=1))


def batches(stream, seq: int, mbs: int, steps: int, seed: int):
    """Random windows of seq+1 tokens from the stream, seeded (epochs = steps*mbs*seq/len)."""
    import torch

    g = np.random.default_rng(seed)
    starts_all = np.arange(0, len(stream) - seq - 1, seq)
    order = np.concatenate([g.permutation(starts_all) for _ in range(math.ceil(steps * mbs / len(starts_all)) + 1)])
    data = torch.from_numpy(stream.astype(np.int64))
    for s in range(steps):
        idx = order[s * mbs:(s + 1) * mbs]
        yield torch.stack([data[i:i + seq + 1] for i in idx])


def train_one(stream, meta: dict, preset: str, seq: int, mbs: int, tokens: int, seed: int, lr: float,
              device: str = "cuda", compile_: bool = False):
    import torch
    import torch.nn.functional as F

    from lmrefinery.train.model import llama_config, use_causal_sdpa

    torch.manual_seed(seed)
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = llama_config(preset, meta["vocab_size"], {"max_position_embeddings": max(seq, 256)},
                       eos_token_id=meta["eos_id"])
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(cfg).to(dev)
    use_causal_sdpa(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), fused=dev.type == "cuda")
    steps = math.ceil(tokens / (seq * mbs))
    warm = max(1, steps // 20)
    fwd = torch.compile(model) if compile_ else model
    t0, last = time.time(), torch.tensor(float('nan'))
    for step, b in enumerate(batches(stream, seq, mbs, steps, seed)):
        b = b.to(dev, non_blocking=True)
        cosine = max(0.1, 0.5 * (1 + math.cos(math.pi * step / steps)))   # down to 10% of the peak
        for grp in opt.param_groups:
            grp["lr"] = lr * min(1.0, (step + 1) / warm) * cosine
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = fwd(input_ids=b[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), b[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        last = loss
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return model, {"steps": steps, "tokens": steps * seq * mbs, "final_loss": float(last), "seconds": time.time() - t0}


def perplexity(model, ids, lengths, seq: int) -> dict:
    """Token-weighted NLL over documents; windows of seq, stride seq/2, each token once."""
    import torch
    import torch.nn.functional as F

    stride = seq // 2
    nll, n = 0.0, 0
    model.eval()
    offs = np.concatenate([[0], np.cumsum(lengths)])
    dev = next(model.parameters()).device
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        for a, b in zip(offs[:-1], offs[1:]):
            doc = torch.from_numpy(ids[a:b].astype(np.int64)).to(dev)
            scored = 1   # the first token has no context
            for begin in range(0, len(doc) - 1, stride):
                end = min(begin + seq, len(doc))
                window = doc[begin:end]
                logits = model(input_ids=window[None]).logits[0].float()
                tgt = window[1:]
                new = end - max(scored, begin + 1)      # tokens not scored by an earlier window
                if new > 0:
                    lp = F.cross_entropy(logits[:-1][-new:], tgt[-new:], reduction="sum")
                    nll += float(lp)
                    n += new
                    scored = end
                if end == len(doc):
                    break
    model.train()
    return {"nats_per_token": nll / n, "ppl": math.exp(nll / n), "tokens": n}


def summarise(runs: list[dict], names: list[str], groups: list[str]) -> dict:
    """Per variant and held-out group: mean nats/token, seed spread (max - min), perplexities."""
    table: dict[str, dict] = {}
    for name in names:
        for g in groups:
            vals = [r["eval"][g]["nats_per_token"] for r in runs if r["variant"] == name]
            if vals:
                table.setdefault(name, {})[g] = {"mean_nats": float(np.mean(vals)), "spread_nats": float(np.ptp(vals)),
                                                 "ppl": [round(math.exp(v), 2) for v in vals]}
    return table


def train(out: str, preset: str, epochs: float, seeds: list[int], seq: int, mbs: int, lr: float,
          device: str = "cuda", compile_: bool = False, variants: list[str] | None = None,
          result: str | None = None, tokens: int | None = None) -> None:
    """Every variant x seed; the result file is rewritten after each model (a cut-short run keeps
    what finished)."""
    import torch

    meta = json.load(open(os.path.join(out, "meta.json")))
    names = variants or list(meta["variants"])
    budget = tokens or int(epochs * min(v["tokens"] for v in meta["variants"].values()))
    held = {g: (np.load(os.path.join(out, f"heldout_{g}.npy")), np.load(os.path.join(out, f"heldout_{g}_lengths.npy")))
            for g in meta["heldout"]}
    result = result or os.path.join(out, "gpu_ablation.json")
    res = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "preset": preset, "seq_len": seq,
           "micro_batch": mbs, "lr": lr, "token_budget": budget, "epochs_of_smallest": epochs, "seeds": seeds,
           "data": meta, "table": {}, "runs": []}
    for seed in seeds:            # seed-major: both arms of the first seed finish first
        for name in names:
            stream = np.load(os.path.join(out, f"train_{name}.npy"))
            model, info = train_one(stream, meta, preset, seq, mbs, budget, seed, lr, device, compile_)
            ev = {g: perplexity(model, ids, lens, seq) for g, (ids, lens) in held.items()}
            res["runs"].append({"variant": name, "seed": seed, **info, "eval": ev,
                                "epochs_of_variant": round(info["tokens"] / meta["variants"][name]["tokens"], 2)})
            print(json.dumps(res["runs"][-1]), flush=True)
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
            res["table"] = summarise(res["runs"], names, list(meta["heldout"]))
            with open(result, "w") as f:
                json.dump(res, f, indent=1)
    print(json.dumps(res["table"], indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="token streams of an ablation run's variants and held-out sets")
    p.add_argument("run_dir", help="an `lmrefinery ablate` run folder (variants/, heldout/, tokenizer/)")
    p.add_argument("out", help="folder to write the .npy files and meta.json into")
    t = sub.add_parser("train", help="train and evaluate every variant x seed on one GPU")
    t.add_argument("out", help="the folder `prepare` wrote")
    t.add_argument("--preset", default="125m", help="model preset (train/model.py)")
    t.add_argument("--epochs", type=float, default=4.0, help="passes over the smallest variant = the budget")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds per variant")
    t.add_argument("--seq", type=int, default=1024, help="sequence length")
    t.add_argument("--micro-batch", type=int, default=32, help="sequences per step")
    t.add_argument("--lr", type=float, default=6e-4, help="peak learning rate")
    t.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run with --preset tiny")
    t.add_argument("--compile", action="store_true", help="torch.compile each model (pays off for long runs only)")
    t.add_argument("--variants", nargs="+", help="train these variants only (default: all prepared)")
    t.add_argument("--result", help="result JSON (default OUT/gpu_ablation.json)")
    t.add_argument("--tokens", type=int, help="the equal budget in tokens (default: --epochs x the smallest "
                                              "prepared variant)")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.run_dir, a.out)
    else:
        train(a.out, a.preset, a.epochs, a.seeds, a.seq, a.micro_batch, a.lr, a.device, a.compile, a.variants,
              a.result, a.tokens)
