"""Evol-Instruct (Xu et al., 2023, WizardLM).

In-depth evolution rewrites an instruction into a harder one by one of five
operations: add constraints, deepen, concretise, increase reasoning steps,
complicate the input; in-breadth evolution writes a new instruction in the same
domain but rarer. Each evolved instruction is answered by the backend, then
eliminated (reason kept) when:
 1. it gives no information gain over its parent (identical after
    normalisation, or - with ``judge=True`` - the backend says they are equal);
 2. the answer shows the model struggled: contains "sorry" (or 抱歉/对不起) and
    is under 80 words;
 3. the answer is only punctuation and stop words;
 4. the instruction copies words of the evolving prompt ("#Rewritten Prompt#",
    "given prompt", "rewritten prompt", ...).
Survivors are records with origin ``evol_instruct``, ``parent_id`` (the record
evolved from), ``evol_method`` and ``evol_depth``; they may be evolved again.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

from .backends import Backend, ChatRequest
from .common import has_cjk, make_record, pair, tokens

_DEPTH_BASE = ("I want you act as a Prompt Rewriter.\nYour objective is to rewrite a given prompt into a more complex "
               "version to make those famous AI systems (e.g., chatgpt and GPT4) a bit harder to handle.\nBut the "
               "rewritten prompt must be reasonable and must be understood and responded by humans.\nYour rewriting "
               "cannot omit the non-text parts such as the table and code in #The Given Prompt#.\nYou SHOULD complicate "
               "the given prompt using the following method:\n{method}\nYou should try your best not to make the "
               "#Rewritten Prompt# become verbose, #Rewritten Prompt# can only add 10 to 20 words into "
               "#The Given Prompt#.\n'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' "
               "are not allowed to appear in #Rewritten Prompt#\n#The Given Prompt#:\n{instruction}\n#Rewritten Prompt#:\n")
DEPTH_METHODS = {
    "constraints": "Please add one more constraints/requirements into #The Given Prompt#",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry can "
              "be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it to "
                 "explicitly request multiple-step reasoning.",
    "complicate_input": "Please add complex input data to #The Given Prompt#, such as a table, code, JSON or a list "
                        "that the task must use.",
}
BREADTH = ("I want you act as a Prompt Creator.\nYour goal is to draw inspiration from the #Given Prompt# to create a "
           "brand new prompt.\nThis new prompt should belong to the same domain as the #Given Prompt# but be even "
           "more rare.\nThe LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given "
           "Prompt#.\nThe #Created Prompt# must be reasonable and must be understood and responded by humans.\n"
           "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
           "#Created Prompt#\n#Given Prompt#:\n{instruction}\n#Created Prompt#:\n")
ZH_SUFFIX = "\n请用中文写出新的指令。"
EQUAL = ("Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the following "
         "requirements:\n1. They have same constraints and requirments.\n2. They have same depth and breadth of the "
         "inquiry.\nThe First Prompt: {a}\nThe Second Prompt: {b}\nYour Judgement (Just answer: Equal or Not Equal. "
         "No need to explain the reason.):")

COPY_MARKERS = ("#the given prompt#", "#rewritten prompt#", "#given prompt#", "#created prompt#", "given prompt",
                "rewritten prompt", "created prompt", "#给定指令#", "#改写后指令#")
STOPWORDS = set("a an the and or but if of to in on at for with by from is are was were be been it this that these "
                "those i you he she we they me him her us them my your his its our their as so not no yes do does did "
                "have has had can could will would should may might must than then there here what which who whom".split())
ZH_STOP = set("的 了 和 是 在 我 你 他 她 它 们 这 那 就 也 都 而 及 与 着 或 一个 没有 不 吗 呢 吧 啊".split())


def _norm(s: str) -> str:
    return re.sub(r"[\W_]+", " ", (s or "").lower()).strip()


def evolved_reject(parent: str, evolved: str, response: str | None, equal_judgement: str | None = None) -> str | None:
    if not evolved or not evolved.strip():
        return "evol_empty"
    low = evolved.lower()
    for m in COPY_MARKERS:
        if m in low:
            return "evol_copied_prompt_words"
    if _norm(parent) == _norm(evolved):
        return "evol_no_information_gain"
    if equal_judgement is not None and re.match(r"\s*equal", equal_judgement.strip().lower()):
        return "evol_no_information_gain"
    resp = response or ""
    if ("sorry" in resp.lower() or "抱歉" in resp or "对不起" in resp) and len(tokens(resp)) < 80:
        return "evol_response_sorry"
    toks = tokens(resp)
    if not any(t not in STOPWORDS and t not in ZH_STOP and not all(c in string.punctuation for c in t) for t in toks):
        return "evol_response_only_stopwords"
    return None


@dataclass
class EvolConfig:
    depth: int = 1                        # evolution generations
    methods: list[str] = field(default_factory=lambda: list(DEPTH_METHODS) + ["breadth"])
    judge: bool = False                   # ask the backend whether parent and child are equal
    seed: int = 0
    source: str = "evol_instruct"
    evolve_params: dict = field(default_factory=lambda: {"temperature": 0.7, "max_tokens": 256})
    answer_params: dict = field(default_factory=lambda: {"temperature": 0.7, "max_tokens": 512})


def _clean_evolved(text: str) -> str:
    t = (text or "").strip()
    t = re.sub(r"^\s*(?:#?\s*(?:Rewritten|Created) Prompt#?\s*:?)\s*", "", t, flags=re.I)
    return t.strip()


def evolve(records: list[dict], backend: Backend, cfg: EvolConfig) -> tuple[list[dict], list[dict], dict]:
    kept, rejects = [], []
    current = records
    stats: dict = {}
    for gen in range(cfg.depth):
        reqs, meta = [], []
        for r in current:
            ins, _ = pair(r)
            if not ins:
                continue
            rng = random.Random(f"{cfg.seed}:{gen}:{r['id']}")
            method = rng.choice(cfg.methods)
            prompt = BREADTH.format(instruction=ins) if method == "breadth" else \
                _DEPTH_BASE.format(method=DEPTH_METHODS[method], instruction=ins)
            if has_cjk(ins):
                prompt += ZH_SUFFIX
            reqs.append(ChatRequest([{"role": "user", "content": prompt}], cfg.evolve_params))
            meta.append((r, ins, method))
        evolved = [(_clean_evolved(x.text or "") if not x.error else "") for x in backend.chat(reqs)]
        answers = backend.chat([ChatRequest([{"role": "user", "content": e or "."}], cfg.answer_params)
                                for e in evolved])
        judgements: list[str | None] = [None] * len(evolved)
        if cfg.judge:
            js = backend.chat([ChatRequest([{"role": "user", "content": EQUAL.format(a=m[1], b=e)}],
                                           {"temperature": 0.0, "max_tokens": 4}) for m, e in zip(meta, evolved)])
            judgements = [j.text for j in js]
        nxt = []
        for (r, ins, method), e, a, j in zip(meta, evolved, answers, judgements):
            why = evolved_reject(ins, e, a.text if not a.error else None, j)
            depth = int((r.get("meta") or {}).get("evol_depth", 0)) + 1
            if why:
                rejects.append({"parent_id": r["id"], "instruction": e, "response": a.text, "evol_method": method,
                                "reason": why, "generation": gen})
                continue
            lang = "zh" if has_cjk(e) else "en"
            rec = make_record([{"role": "user", "content": e}, {"role": "assistant", "content": a.text}],
                              cfg.source, origin="evol_instruct", parent_id=r["id"], id_parts=(method, gen), lang=lang,
                              evol_method=method, evol_depth=depth,
                              category=(r.get("meta") or {}).get("category", "uncategorized"))
            kept.append(rec)
            nxt.append(rec)
        current = nxt
    stats.update(kept=len(kept), rejected=len(rejects))
    return kept, rejects, stats
