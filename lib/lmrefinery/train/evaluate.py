"""Generation-based evaluation for instruction tuning: greedy answers to held-out
prompts scored against the references with ROUGE-L F1 (rouge-score) and corpus BLEU
(sacrebleu). Chinese references are tokenised into characters (or jieba words) for
ROUGE and with sacrebleu's ``zh`` tokenizer for BLEU; rouge-score's default
tokenizer would silently drop every CJK character."""
from __future__ import annotations

import re
from typing import Any

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff]")
_WORD = re.compile(r"\w+", re.UNICODE)


def is_chinese(text: str, threshold: float = 0.2) -> bool:
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(1 for c in chars if _CJK.match(c)) / len(chars) >= threshold


class _Tokenizer:
    """rouge-score tokenizer: CJK characters (or jieba words) one token each, other
    text as lower-cased word tokens."""

    def __init__(self, zh: str = "char"):
        self.zh = zh

    def tokenize(self, text: str) -> list[str]:
        text = text.lower()
        if self.zh == "jieba" and _CJK.search(text):
            import jieba

            return [w for w in (x.strip() for x in jieba.cut(text)) if w and _WORD.search(w)]
        out: list[str] = []
        for w in _WORD.findall(text):
            if _CJK.search(w):
                buf = ""
                for c in w:
                    if _CJK.match(c):
                        if buf:
                            out.append(buf)
                            buf = ""
                        out.append(c)
                    else:
                        buf += c
                if buf:
                    out.append(buf)
            else:
                out.append(w)
        return out


def score(hyps: list[str], refs: list[str], zh: str = "char") -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    if not refs:
        return {"rougeL": None, "bleu": None, "n": 0}
    sc = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer(zh))
    r = [sc.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hyps, refs)]
    zh_refs = sum(is_chinese(x) for x in refs)
    tok = "zh" if zh_refs else "13a"
    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tok)
    return {"rougeL": sum(r) / len(r), "bleu": bleu.score, "n": len(refs), "bleu_tokenize": tok,
            "chinese_references": zh_refs}


def generate_answers(model, tok, prompts: list[list[int]], max_new_tokens: int = 64) -> list[str]:
    import torch

    from .export import stop_token_ids

    model.eval()
    eos = stop_token_ids(tok)
    limit = int(getattr(model.config, "max_position_embeddings", 2048)) - max_new_tokens
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p[-limit:]], dtype=torch.long, device=dev)
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                               do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id)
            out.append(tok.decode(g[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return out


def evaluate_model(model_dir: str, convs: list[dict], max_new_tokens: int = 64, zh: str = "char",
                   samples: int = 5, tokenizer_dir: str | None = None) -> dict:
    """Score a model directory on held-out conversations (``prompt_ids``/``reference_ids``
    from ``data.heldout_conversations``). The tokenizer comes from ``tokenizer_dir`` (the
    one the ids were made with) or the model directory."""
    import torch
    from transformers import AutoModelForCausalLM

    from .export import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(tokenizer_dir or model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # transformers types in part
    if torch.cuda.is_available():
        model = model.cuda()
    hyps = generate_answers(model, tok, [c["prompt_ids"] for c in convs], max_new_tokens)
    refs = [tok.decode(c["reference_ids"], skip_special_tokens=True).strip() for c in convs]
    res = score(hyps, refs, zh)
    res["samples"] = [{"prompt": tok.decode(c["prompt_ids"], skip_special_tokens=False)[-500:],
                       "reference": r, "generated": h} for c, r, h in list(zip(convs, refs, hyps))[:samples]]
    return res
