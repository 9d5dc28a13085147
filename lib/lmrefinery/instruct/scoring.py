"""Instruction-quality scores, offline, stored on the rows (``meta``) so that
``instruct_filter`` (``max_ifd``, ``min_judge_score``) and ``instruct_balance``
(``prefer``: keep the best-scored rows of a group instead of a hash sample) can
use them.

* **IFD** (Instruction-Following Difficulty, Li et al. 2023, "From Quantity to
  Quality", the Cherry-LLM selection): with any local HF causal LM,
  ``ifd = PPL(response | instruction) / PPL(response)`` - the mean token loss
  of the response with the instruction as context against without it.
  ``ifd`` near or above 1: the instruction does not help predict the answer
  (mismatched or trivial pair); the paper keeps high-IFD rows below 1.
  Columns: ``ifd``, ``loss_with_instruction``, ``loss_response_only``.
* **LLM judge**: any backend (OpenAI-compatible server, transformers, Ray, vLLM)
  rates each pair 1-5 with a fixed rubric (English or Chinese prompt);
  ``judge_score`` (None when the reply has no score, with ``judge_raw``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .common import cjk_ratio, pair


@dataclass
class IFDScorer:
    model_dir: str
    max_len: int = 1024
    batch_size: int = 8
    _model: object = None
    _tok: object = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.model_dir)
            self._model = AutoModelForCausalLM.from_pretrained(self.model_dir).eval()
        return self._tok, self._model

    def _mean_losses(self, items: list[tuple[list[int], list[int]]]) -> list[float]:
        """Mean NLL of the ``target`` tokens after the ``context`` tokens, per item."""
        import torch

        tok, model = self._load()
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        out = []
        for i in range(0, len(items), self.batch_size):
            chunk = items[i:i + self.batch_size]
            seqs = [(c + t)[: self.max_len] for c, t in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            att = torch.zeros((len(seqs), width), dtype=torch.long)
            labels = torch.full((len(seqs), width), -100, dtype=torch.long)
            for k, ((c, _), s) in enumerate(zip(chunk, seqs)):
                ids[k, :len(s)] = torch.tensor(s)
                att[k, :len(s)] = 1
                labels[k, len(c):len(s)] = torch.tensor(s[len(c):])
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
            tgt = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=-100, reduction="none")
            n = (tgt != -100).sum(1).clamp(min=1)
            out += (nll.sum(1) / n).tolist()
        return out

    def score(self, rows: list[dict]) -> list[dict]:
        """Per row: {"ifd", "loss_with_instruction", "loss_response_only"} (empty for rows
        without an instruction and a response)."""
        tok, _ = self._load()
        cond, alone, idx = [], [], []
        for k, r in enumerate(rows):
            ins, resp = pair(r)
            if not ins.strip() or not resp.strip():
                continue
            p = tok(ins + "\n", add_special_tokens=False)["input_ids"]
            a = tok(resp, add_special_tokens=False)["input_ids"]
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
            cond.append((bos + p, a))
            alone.append((bos or [tok.eos_token_id if tok.eos_token_id is not None else 0], a))
            idx.append(k)
        lc, la = self._mean_losses(cond), self._mean_losses(alone)
        out: list[dict] = [{} for _ in rows]
        for k, c, a in zip(idx, lc, la):
            out[k] = {"ifd": round(math.exp(c - a), 6), "loss_with_instruction": round(c, 6),
                      "loss_response_only": round(a, 6)}
        return out


JUDGE_PROMPT = {
    "en": ("Rate the quality of this instruction-response pair for training an assistant, from 1 (useless: "
           "wrong, off-topic, unclear or harmful) to 5 (excellent: clear instruction, correct, complete and "
           "helpful answer). Reply with the number only.\n\nInstruction:\n{ins}\n\nResponse:\n{resp}"),
    "zh": ("请为下面这条用于训练助手的指令-回答数据打分，1分（无用：错误、跑题、不清楚或有害）到5分（优秀：指令清晰，"
           "回答正确、完整、有帮助）。只回复分数。\n\n指令：\n{ins}\n\n回答：\n{resp}"),
}
_SCORE = re.compile(r"(?<![\d.])([1-5])(?:\s*(?:/\s*5|分))?(?![\d.])")


def parse_judge(text: str | None) -> int | None:
    m = _SCORE.search(text or "")
    return int(m.group(1)) if m else None


def judge_scores(rows: list[dict], backend, params: dict | None = None) -> list[dict]:
    from .backends import ChatRequest

    params = params or {"temperature": 0.0, "max_tokens": 8}
    reqs, idx = [], []
    for k, r in enumerate(rows):
        ins, resp = pair(r)
        if ins.strip() and resp.strip():
            lang = "zh" if cjk_ratio(ins + resp) >= 0.2 else "en"
            reqs.append(ChatRequest([{"role": "user", "content": JUDGE_PROMPT[lang].format(ins=ins, resp=resp)}],
                                    params))
            idx.append(k)
    out: list[dict] = [{} for _ in rows]
    for k, res in zip(idx, backend.chat(reqs)):
        out[k] = {"judge_score": parse_judge(res.text), "judge_raw": (res.text or "")[:200]}
    return out


def with_scores(rows: list[dict], scores: list[dict]) -> list[dict]:
    return [{**r, "meta": {**r["meta"], **s}} for r, s in zip(rows, scores)]
