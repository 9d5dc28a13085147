"""Generation scores on an instruction split: greedy answers to held-out prompts,
ROUGE-L F1 / corpus BLEU / exact match per language and overall.

The items come from ``instruct.heldout.heldout_items`` (a dataset version's split:
repeats and duplicate prompts dropped) or from a JSONL file of Alpaca rows
(``instruction``, ``input``, ``output``) or chat rows (``messages``); the scoring is
``instruct.heldout.score_by_language`` (Chinese by characters); generation is
``train.evaluate.generate_answers``. Few-shot: the first ``shots`` items of another
split (or file) become earlier user/assistant turns of every prompt.
"""
from __future__ import annotations

import json
import os

from ..instruct.heldout import HeldOutItem, heldout_items, score_by_language


def items_from_jsonl(path: str) -> list[HeldOutItem]:
    from ..core import storage
    from ..train.evaluate import is_chinese

    out = []
    for k, line in enumerate(storage.read_bytes(path).decode("utf-8").splitlines()):
        if not line.strip():
            continue
        r = json.loads(line)
        if "messages" in r:
            msgs = r["messages"]
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            prompt, ref = msgs[:last], msgs[last]["content"]
        else:
            user = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
            prompt, ref = [{"role": "user", "content": user}], r["output"]
        lang = r.get("lang") or ("zh" if is_chinese(ref + prompt[-1]["content"]) else "en")
        out.append(HeldOutItem(str(r.get("id", k)), lang, prompt, ref))
    return out


def load_items(ref: str, split: str) -> list[HeldOutItem]:
    if ref.endswith((".jsonl", ".json")) and not os.path.isdir(ref):
        return items_from_jsonl(ref)
    return heldout_items(ref, split)[0]


def _prompt_key(it: HeldOutItem) -> str:
    return " ".join("\n".join(m.get("content") or "" for m in it.prompt).split()).casefold()


def _shot_turns(shots: list[HeldOutItem]) -> list[dict]:
    turns: list[dict] = []
    for s in shots:
        turns += [m for m in s.prompt if m["role"] != "system"] + [{"role": "assistant", "content": s.reference}]
    return turns


def instruction_eval(model_dir: str, ref: str, split: str = "test", shots: int = 0,
                     shots_from: str | None = None, shots_split: str = "train", limit: int | None = None,
                     max_new_tokens: int = 64, model=None, tok=None) -> dict:
    """{"items", "shots", "by_language": {lang: {rougeL, bleu, exact_match, n, ...}}, "samples"}."""
    from ..train.evaluate import generate_answers
    from .perplexity import load_model

    items = load_items(ref, split)[:limit]
    examples: list[HeldOutItem] = []
    if shots:
        pool = load_items(shots_from or ref, shots_split)
        held = {_prompt_key(it) for it in items}
        examples = [p for p in pool if _prompt_key(p) not in held][:shots]   # never a scored prompt
    if model is None or tok is None:
        model, tok = load_model(model_dir)
    prefix = _shot_turns(examples)
    texts = [tok.apply_chat_template(prefix + it.prompt, add_generation_prompt=True, tokenize=False)
             for it in items]
    prompts = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    hyps = generate_answers(model, tok, prompts, max_new_tokens)
    return {"items": len(items), "shots": len(examples), "split": split,
            "by_language": score_by_language(items, hyps),
            "samples": [{"id": it.id, "lang": it.lang, "reference": it.reference, "generated": h}
                        for it, h in list(zip(items, hyps))[:5]]}
