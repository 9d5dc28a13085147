"""LLM augmentation of instructions: paraphrase, expand (then answer the new
instruction) or back-translate, through a generation backend. ``n_variants`` per
row, each gated (``VariantGate``); the refused ones are returned with a reason."""
from __future__ import annotations

from ..backends import Backend, ChatRequest
from ..common import make_record, messages, pair
from .back_translation import Translator, back_translate
from .gate import VariantGate
from .variant import VariantRequest, restore

PROMPTS = {
    "paraphrase": {"en": "Paraphrase the following instruction. Keep its meaning and every placeholder like "
                         "[[CODE0]] unchanged. Reply with the new instruction only.\n\n{text}",
                   "zh": "请改写下面的指令，保持意思不变，保留所有形如[[CODE0]]的占位符。"
                         "只输出改写后的指令。\n\n{text}"},
    "expand": {"en": "Rewrite the following instruction so that it is more detailed and specific. Keep every "
                     "placeholder like [[CODE0]]. Reply with the new instruction only.\n\n{text}",
               "zh": "请把下面的指令改写得更具体、更详细，保留所有形如[[CODE0]]的占位符。只输出新的指令。\n\n{text}"},
}


def llm_augment(rows: list[dict], backend: Backend | Translator, kind: str, params: dict | None = None,
                answer: bool | None = None, source: str | None = None, n_variants: int = 1, seed: int = 0,
                gate: VariantGate | None = None) -> tuple[list[dict], list[dict]]:
    """kind: paraphrase | expand | back_translation. ``n_variants`` requests per row (seeds
    ``seed``, ``seed+1``, ...; identical variants kept once); every variant passes ``gate``
    (reasons in the rejects). A backend with ``translate(texts, src, tgt)`` (a local
    seq2seq translation model) is used for back-translation instead of chat prompts."""
    params = dict(params or {"temperature": 0.7, "max_tokens": 256})
    gate = gate or VariantGate()
    answer = (kind == "expand") if answer is None else answer
    items = [VariantRequest.of(r, ins, k) for r in rows for ins in [pair(r)[0]] if ins
             for k in range(max(1, n_variants))]
    if kind == "back_translation":
        results = back_translate(backend, items, params, seed)
    else:
        results = _rewrite(_chat_backend(backend, kind), kind, items, params, seed)
    restored = [restore(txt.strip(), it.codes) if txt is not None else None for it, txt in zip(items, results)]
    keep, rejects = _gated(items, restored, gate, kind)
    answers: list[str | None] = [None] * len(keep)
    if answer and keep:
        got = _chat_backend(backend, "answers").chat([
            ChatRequest([{"role": "user", "content": new}], dict(params, seed=seed + it.variant)) for it, new in keep])
        answers = [g.text if not g.error else None for g in got]
    out = []
    for (it, new), ans in zip(keep, answers):
        if answer and not (ans or "").strip():
            rejects.append({"parent_id": it.row["id"], "origin": kind, "reason": "no_answer", "variant": it.variant})
            continue
        out.append(_replace_instruction(it.row, new, kind, source, {"variant": it.variant},
                                        new_response=ans if answer else None))
    return out, rejects


def _chat_backend(backend: Backend | Translator, what: str) -> Backend:
    if isinstance(backend, Translator):
        raise TypeError(f"{what} need a chat backend; a translation model only does back_translation")
    return backend


def _rewrite(backend: Backend, kind: str, items: list[VariantRequest], params: dict, seed: int) -> list[str | None]:
    """One paraphrased / expanded text per item, None on a backend error."""
    res = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS[kind][it.lang].format(text=it.text)}],
                                    dict(params, seed=seed + it.variant)) for it in items])
    return [x.text if not x.error else None for x in res]


def _gated(items: list[VariantRequest], restored: list[str | None], gate: VariantGate,
           kind: str) -> tuple[list[tuple[VariantRequest, str]], list[dict]]:
    """(item, new instruction) for the variants that pass, and a reject per refused one."""
    keep: list[tuple[VariantRequest, str]] = []
    rejects: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for it, new in zip(items, restored):
        ins, row_id = it.instruction, it.row["id"]
        why: str | None
        if new is None:
            why = "code_block_lost" if it.codes else "backend_error_or_empty"
        elif not new.strip():
            why = "empty_output"
        elif new.strip() == ins.strip() or (row_id, new.strip()) in seen:
            why = "unchanged" if new.strip() == ins.strip() else "duplicate_variant"
        else:
            why = gate(ins, new, kind)
        if why or new is None:
            rejects.append({"parent_id": row_id, "origin": kind, "reason": why, "variant": it.variant,
                            "instruction": new})
            continue
        seen.add((row_id, new.strip()))
        keep.append((it, new))
    return keep, rejects


def _replace_instruction(row: dict, new_ins: str, origin: str, source: str | None, extra: dict,
                         new_response: str | None = None) -> dict:
    msgs = [dict(m) for m in messages(row)]
    for m in msgs:
        m.pop("lang", None)
    for m in msgs:
        if m["role"] == "user":
            m["content"] = new_ins
            break
    if new_response is not None:
        for m in msgs:
            if m["role"] == "assistant":
                m["content"] = new_response
                break
    meta = row.get("meta") or {}
    return make_record(msgs, source or row.get("source") or "augment", origin=origin, parent_id=row["id"],
                       id_parts=(origin,), lang=row.get("lang"), category=meta.get("category", "uncategorized"),
                       **extra)
