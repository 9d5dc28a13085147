"""Training throughput: tokens/s and MFU of the trainer's step (the same model build,
loss and optimizer as lib/lmrefinery/train/loop.py) for the model presets.

    python bench/train.py                 # CPU: tiny preset (GPU figures pending)
    python bench/train.py --gpu           # one GPU: 125m and 350m at seq 1024 and 2048, bf16
    python bench/train.py --gpu --compile --presets 350m --seq 2048

Writes bench/results/train.json and prints a table. MFU = FLOPs/token (6N + 12·L·d·T,
PaLM appendix B) x tokens/s / peak (train/mfu.py table). Random token ids; no document
masking unless --doc-mask (which turns flash attention into masked SDPA)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# bench/ holds scripts named like stdlib modules (tokenize.py): keep it off the import path
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.join(ROOT, "bench")]
sys.path.insert(0, os.path.join(ROOT, "lib"))


def bench_one(preset: str, seq: int, mbs: int, steps: int, warmup: int, device: str, compile_: bool,
              doc_mask: bool, vocab: int, threads: int | None, sdpa: str = "auto", legacy: bool = False) -> dict:
    import torch

    from lmrefinery.train.mfu import device_name, mfu, peak_flops
    from lmrefinery.train.model import build_model, flops_per_token, matmul_params, param_counts, use_causal_sdpa
    from lmrefinery.train.step import batch_loss as _loss
    from lmrefinery.train.worker import param_groups as _param_groups
    from lmrefinery.train.worker import set_sdpa_backend

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    model = build_model("scratch", preset, vocab, {"max_position_embeddings": max(seq, 256)}).to(dev)
    if not doc_mask and not legacy:  # as the trainer does
        use_causal_sdpa(model)
    counts = param_counts(model)
    fpt = flops_per_token(model.config, seq, matmul_params(model.config))
    cuda = dev.type == "cuda"
    if cuda:  # as the trainer does
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        set_sdpa_backend(sdpa)
    amp = torch.bfloat16 if cuda else None
    opt = torch.optim.AdamW(_param_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95), fused=cuda,
                            foreach=None if cuda else False)
    fwd = torch.compile(model) if compile_ else model
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (mbs, seq + 1), generator=g)
    pos = torch.arange(seq).repeat(mbs, 1)
    if doc_mask:  # documents of ~seq/4 tokens
        pos = pos % max(1, seq // 4)
    b = {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "position_ids": pos}
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss_sum, n = _loss(fwd, b, dev, amp, doc_mask, compile_ and not legacy)
        (loss_sum / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    tps = mbs * seq / med
    name = device_name()
    peak = peak_flops(name if cuda else None, "bf16" if amp else "fp32")
    out = {"preset": preset, "seq_len": seq, "micro_batch": mbs, "device": name, "dtype": "bf16" if amp else "fp32",
           "compile": compile_, "doc_mask": doc_mask, "sdpa": sdpa, "legacy": legacy, "params": counts["total"],
           "flops_per_token": fpt, "step_s_median": round(med, 4), "tokens_per_s": round(tps, 1),
           "model_tflops_per_s": round(fpt * tps / 1e12, 3),
           "peak_tflops": round(peak / 1e12, 1) if peak else None,
           "mfu": round(mfu(fpt, tps, 1, peak), 4) if peak else None}
    if cuda:
        out["max_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    del model, opt, fwd
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--presets", nargs="+")
    ap.add_argument("--seq", nargs="+", type=int)
    ap.add_argument("--micro-batch", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--doc-mask", action="store_true")
    ap.add_argument("--vocab", type=int, help="default: 32000 on GPU, 1024 (the tests' tokenizer size) on CPU")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--sdpa", default="auto", choices=["auto", "cudnn", "flash", "efficient", "math"],
                    help="restrict SDPA to one backend (as trainer.sdpa_backend)")
    ap.add_argument("--legacy", action="store_true",
                    help="the trainer before the compile fixes: eager fp32 cross-entropy and transformers' "
                         "materialised causal mask under torch.compile")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "train.json"))
    a = ap.parse_args()
    if a.gpu:
        presets, seqs = a.presets or ["125m", "350m"], a.seq or [1024, 2048]
        mbs, steps, warm = a.micro_batch or 8, a.steps or 20, a.warmup or 5
        device = "cuda"
    else:
        presets, seqs = a.presets or ["tiny"], a.seq or [128, 256]
        mbs, steps, warm = a.micro_batch or 16, a.steps or 20, a.warmup or 3
        device = "cpu"
    rows = []
    for p in presets:
        for s in seqs:
            # keep tokens per step roughly constant across sequence lengths
            m = max(1, mbs * min(seqs) // s) if a.gpu else mbs
            r = bench_one(p, s, m, steps, warm, device, a.compile, a.doc_mask, a.vocab or (32000 if a.gpu else 1024),
                          a.threads, a.sdpa, a.legacy)
            rows.append(r)
            mf = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            print(f"{p:>5} seq {s:>5} mbs {m:>3} {r['dtype']:>4}: {r['tokens_per_s']:>12,.0f} tok/s  "
                  f"{r['model_tflops_per_s']:>8.2f} TFLOP/s  MFU {mf}", flush=True)
    old = {}
    if os.path.exists(a.out):
        with open(a.out) as f:
            old = json.load(f)
    key = ("gpu" if a.gpu else "cpu") + ("_compile" if a.compile else "") + ("_docmask" if a.doc_mask else "") \
        + (f"_{a.sdpa}" if a.sdpa != "auto" else "") + ("_legacy" if a.legacy else "")
    # runs with the same options but other presets / lengths add rows; a repeated shape replaces its row
    shape = lambda r: (r["preset"], r["seq_len"], r["micro_batch"])  # noqa: E731
    kept = [r for r in old.get(key, {}).get("rows", []) if shape(r) not in {shape(n) for n in rows}]
    old[key] = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(), "torch_threads": a.threads, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "rows": kept + rows}
    if not a.gpu:
        old.setdefault("gpu_status", {"status": "pending: no GPU was available when this file was written; "
                                         "run `python bench/train.py --gpu` on one"})
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(old, f, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
