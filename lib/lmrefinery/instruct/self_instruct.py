"""Self-Instruct (Wang et al., 2022), as published, in English and Chinese.

Each round:
 1. prompts: ``num_prompts`` prompts of 8 instructions each, 6 sampled from the
    human seed tasks and 2 from the machine-generated pool (seeds while the pool
    is still too small), asking for task 9 onwards;
 2. parse the completion into candidate instructions ("Task N:" / "N." lines);
 3. filter: 3-150 words, keyword blocklist, starts with punctuation, (English)
    starts with a non-ASCII character, ROUGE-L >= 0.7 against the pool
    (``rouge.RougePool``: vectorised bound + exact LCS on survivors);
 4. classify: is the task classification with finite labels? (LLM, few-shot);
 5. instances: classification tasks output-first ("Class label: / Input:"),
    others input-first ("Input: / Output:");
 6. accepted tasks join the pool; each instance becomes a conversation record
    with origin ``self_instruct``, the round, and the ids of the 8 prompt tasks.

Every step goes through a ``Backend``; with ``CachedBackend`` a re-run with the
same seed replays from the cache and sends no request. Gibberish from a weak
model never raises: unparsable output becomes a reject with a reason.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from typing import Any

from .backends import Backend, ChatRequest, ChatResult
from .common import has_cjk, make_record, read_jsonl, tokens
from .rouge import RougePool

BLOCKLIST = {
    "en": ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
           "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram"],
    "zh": ["图片", "图像", "照片", "图表", "画", "绘制", "文件", "地图", "视频", "音频", "音乐", "流程图", "示意图", "链接"],
}

PROMPTS: dict[str, dict[str, Any]] = {   # prompt texts, and tuples of answer words
    "en": {
        "instructions": "Come up with a series of tasks:\n",
        "task": "Task {i}: {instruction}\n",
        "clf": ("Can the following task be regarded as a classification task with finite output labels?\n\n"
                "Task: Given my personality and the job, tell me if I would be suitable.\nIs it classification? Yes\n\n"
                "Task: Give me an example of a time when you had to use your sense of humor.\nIs it classification? No\n\n"
                "Task: Replace the placeholders in the given text with appropriate named entities.\nIs it classification? No\n\n"
                "Task: Fact checking - tell me if the statement is true, false, or unknown, based on your knowledge.\n"
                "Is it classification? Yes\n\nTask: {instruction}\nIs it classification?"),
        "output_first": ("Given the classification task definition and the class labels, generate an input that "
                         "corresponds to each of the class labels. If the task doesn't require input, just generate "
                         "possible class labels.\n\nTask: Classify the sentiment of the sentence into positive, "
                         "negative, or mixed.\nClass label: mixed\nSentence: I enjoy the flavor of the restaurant but "
                         "their service is too slow.\nClass label: positive\nSentence: I had a great day today.\n\n"
                         "Task: {instruction}\n"),
        "input_first": ("Come up with examples for the following tasks. Try to generate multiple examples when "
                        "possible. If the task doesn't require additional input, you can generate the output "
                        "directly.\n\nTask: Which exercises are best for reducing belly fat at home?\nOutput:\n- Lying "
                        "Leg Raises\n- Leg In And Out\n- Plank\n\nTask: Extract all the country names in the "
                        "paragraph, list them separated by commas.\nExample 1\nParagraph: Dr. No is the sixth novel by "
                        "the English author Ian Fleming. Set in Jamaica, it was first published in the United Kingdom.\n"
                        "Output: English, British, Jamaica, the United Kingdom.\n\nTask: {instruction}\n"),
        "yes": ("yes",), "no": ("no",),
    },
    "zh": {
        "instructions": "请想出一系列任务：\n",
        "task": "任务{i}：{instruction}\n",
        "clf": ("下面的任务能否看作输出标签有限的分类任务？\n\n任务：根据我的性格和这份工作，告诉我是否合适。\n是否分类：是\n\n"
                "任务：举一个你不得不用幽默感的例子。\n是否分类：否\n\n任务：判断这句话的情感是积极还是消极。\n是否分类：是\n\n"
                "任务：{instruction}\n是否分类："),
        "output_first": ("根据分类任务的定义和类别标签，为每个类别标签生成一个对应的输入。\n\n任务：判断句子的情感是积极、消极还是中性。\n"
                         "类别标签：积极\n输入：今天天气真好，我很开心。\n类别标签：消极\n输入：排了两个小时的队，什么也没买到。\n\n"
                         "任务：{instruction}\n"),
        "input_first": ("为下面的任务写出例子。尽量写多个例子；如果任务不需要额外输入，可以直接给出输出。\n\n任务：在家减小腹最好的运动有哪些？\n"
                        "输出：\n- 仰卧抬腿\n- 平板支撑\n\n任务：找出段落中的所有国家名，用逗号分隔。\n例子1\n输入：《诺博士》是英国作家伊恩·弗莱明的第六部小说，"
                        "故事发生在牙买加。\n输出：英国，牙买加\n\n任务：{instruction}\n"),
        "yes": ("是", "yes"), "no": ("否", "不是", "no"),
    },
}


@dataclass
class SeedTask:
    id: str
    instruction: str
    instances: list[dict]
    is_classification: bool
    name: str = ""
    origin: str = "seed"


def load_seed_tasks(path: str) -> list[SeedTask]:
    out = []
    for r in read_jsonl(path):
        out.append(SeedTask(str(r.get("id")), r["instruction"].strip(), r.get("instances") or [],
                            bool(r.get("is_classification")), r.get("name", "")))
    return out


# ---------------------------------------------------------------- parsing
_TASK_SPLIT = re.compile(r"(?:^|\n)\s*(?:Task|任务)\s*\d+\s*[:：.．]\s*|(?:^|\n)\s*\d{1,2}\s*[.．、)]\s+", re.I)


def parse_instructions(text: str) -> list[str]:
    """Completion of "Task 9:" -> candidate instructions (the first piece is task 9 itself)."""
    if not text:
        return []
    pieces = _TASK_SPLIT.split(text)
    out = []
    for p in pieces:
        p = re.split(r"\n\s*(?:Input|Output|输入|输出)\s*[:：]", p)[0]
        p = re.sub(r"\s+", " ", p).strip()
        if p:
            out.append(p)
    return out


def instruction_reject(ins: str, lang: str, pool: RougePool, min_words: int = 3, max_words: int = 150,
                       blocklist: list[str] | None = None) -> tuple[str | None, float]:
    """The published Self-Instruct filters; returns (reason or None, max ROUGE-L)."""
    n = len(tokens(ins, lang)) if lang == "zh" else len(ins.split())
    if n < min_words:
        return "too_short", 0.0
    if n > max_words:
        return "too_long", 0.0
    low = ins.lower()
    for w in (blocklist if blocklist is not None else BLOCKLIST.get(lang, BLOCKLIST["en"])):
        if (re.search(rf"\b{re.escape(w)}\b", low) if w.isascii() else w in ins):
            return f"blocklist:{w}", 0.0
    if low.startswith("write a program"):
        return "blocklist:write a program", 0.0
    if ins[0] in string.punctuation or ins[0] in "，。！？；：、“”‘’（）《》【】…":
        return "starts_with_punctuation", 0.0
    if lang == "en" and not ins[0].isascii():
        return "starts_non_ascii", 0.0
    if lang == "en" and has_cjk(ins):
        return "language_mismatch", 0.0
    if lang == "zh" and not has_cjk(ins):
        return "language_mismatch", 0.0
    sim, score, _ = pool.too_similar(ins)
    if sim:
        return "rouge_l_too_similar", score
    return None, score


def parse_yes_no(text: str, lang: str) -> bool | None:
    t = (text or "").strip().lower()
    if not t:
        return None
    p = PROMPTS[lang]
    first = re.split(r"[\s,.，。!！:：]+", t)[0] if t else ""
    for y in p["yes"]:
        if first.startswith(y):
            return True
    for n in p["no"]:
        if first.startswith(n):
            return False
    return None


_INST_SPLIT = re.compile(r"\n?\s*(?:Example\s*\d+|例子\s*\d+)\s*\n", re.I)


def parse_instances(text: str, classification: bool, lang: str) -> list[dict]:
    """Completion -> [{input, output}]. Output-first: "Class label: ... \\n <Input>: ...";
    input-first: "Input: ... Output: ..." blocks or a bare "Output: ..."."""
    text = (text or "").split("\nTask:")[0].split("\n任务：")[0]
    out = []
    if classification:
        blocks = re.split(r"(?:^|\n)\s*(?:Class label|类别标签)\s*[:：]\s*", text)[1:]
        for b in blocks:
            label, _, rest = b.partition("\n")
            rest = re.sub(r"^\s*[^:：\n]{1,20}[:：]\s*", "", rest.strip(), count=1)
            label = label.strip()
            if label:
                out.append({"input": rest.strip(), "output": label})
        return out
    for b in _INST_SPLIT.split(text):
        m = re.search(r"(?:^|\n)\s*(?:Output|输出)\s*[:：]\s*(.*)$", b, re.S)
        if not m:
            continue
        outp = m.group(1).strip()
        inp = b[:m.start()]
        inp = re.sub(r"^\s*(?:Input|输入|[^:：\n]{1,20})\s*[:：]\s*", "", inp.strip(), count=1) if inp.strip() else ""
        if outp:
            out.append({"input": inp.strip(), "output": outp})
    return out


# ---------------------------------------------------------------- the loop
@dataclass
class SelfInstructConfig:
    lang: str = "en"
    rounds: int = 1
    num_prompts: int = 4                 # prompts (requests) per round
    human_per_prompt: int = 6
    machine_per_prompt: int = 2
    rouge_threshold: float = 0.7
    min_words: int = 3
    max_words: int = 150
    max_instances: int = 3
    seed: int = 0
    source: str = "self_instruct"
    gen_params: dict = field(default_factory=lambda: {"temperature": 0.7, "top_p": 0.5, "max_tokens": 256})
    clf_params: dict = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 3})
    inst_params: dict = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 300})


@dataclass
class SelfInstructResult:
    records: list[dict]
    rejects: list[dict]           # {"instruction"|"text", "reason", "round", ...}
    tasks: list[SeedTask]         # machine tasks accepted into the pool
    stats: dict


def _human(msgs_text: str) -> list[dict]:
    return [{"role": "user", "content": msgs_text}]


def run_self_instruct(seeds: list[SeedTask], backend: Backend, cfg: SelfInstructConfig) -> SelfInstructResult:
    """``cfg.rounds`` rounds of: prompt with sampled human and machine tasks, keep the new
    instructions that pass the filters, ask whether each is a classification task, then
    for its instances; every accepted task joins the pool the next rounds sample from."""
    pool = RougePool(cfg.rouge_threshold)
    for s in seeds:
        pool.add(s.instruction)
    machine: list[SeedTask] = []
    records: list[dict] = []
    rejects: list[dict] = []
    stats = {"prompts": 0, "candidates": 0, "accepted_tasks": 0, "records": 0, "rejected": 0}
    for rnd in range(cfg.rounds):
        prompts, used = _round_prompts(seeds, machine, cfg, rnd)
        stats["prompts"] += len(prompts)
        accepted = _accepted_instructions(backend.chat(prompts), used, pool, cfg, rnd, stats, rejects)
        for task, chosen, yes in _new_tasks(accepted, backend, cfg, rnd, len(machine), rejects):
            machine.append(task)
            stats["accepted_tasks"] += 1
            records += _task_records(task, chosen, yes, cfg, rnd)
    stats["records"] = len(records)
    stats["rejected"] = len(rejects)
    stats["rouge_exact_checks"] = pool.exact_checks
    return SelfInstructResult(records, rejects, machine, stats)


def _round_prompts(seeds: list[SeedTask], machine: list[SeedTask], cfg: SelfInstructConfig,
                   rnd: int) -> tuple[list[ChatRequest], list[list[SeedTask]]]:
    """The round's generation prompts, each with the tasks shown in it as examples."""
    P = PROMPTS[cfg.lang]
    rng = random.Random(f"{cfg.seed}:{rnd}")
    prompts, used = [], []
    for k in range(cfg.num_prompts):
        n_machine = min(cfg.machine_per_prompt, len(machine))
        chosen = rng.sample(seeds, cfg.human_per_prompt + cfg.machine_per_prompt - n_machine)
        chosen += rng.sample(machine, n_machine) if n_machine else []
        rng.shuffle(chosen)
        text = P["instructions"] + "".join(P["task"].format(i=i + 1, instruction=t.instruction)
                                           for i, t in enumerate(chosen))
        text += P["task"].format(i=len(chosen) + 1, instruction="").rstrip() + " "
        prompts.append(ChatRequest(_human(text.rstrip()), dict(cfg.gen_params, seed=cfg.seed * 1000 + rnd * 100 + k)))
        used.append(chosen)
    return prompts, used


def _accepted_instructions(results: list[ChatResult], used: list[list[SeedTask]], pool: RougePool,
                           cfg: SelfInstructConfig, rnd: int, stats: dict,
                           rejects: list[dict]) -> list[tuple[str, list[SeedTask]]]:
    """The generated instructions that pass the filters (each added to ``pool``), with the
    tasks of the prompt that made them; the others go to ``rejects`` with a reason."""
    accepted: list[tuple[str, list[SeedTask]]] = []
    for res, chosen in zip(results, used):
        if res.error:
            rejects.append({"text": None, "reason": f"backend_error:{res.error}", "round": rnd})
            continue
        cands = parse_instructions(res.text or "")
        if not cands:
            rejects.append({"text": res.text, "reason": "unparsable_instructions", "round": rnd})
        for c in cands:
            stats["candidates"] += 1
            why, score = instruction_reject(c, cfg.lang, pool, cfg.min_words, cfg.max_words)
            if why:
                rejects.append({"instruction": c, "reason": why, "rouge_l": round(score, 4), "round": rnd,
                                "prompt_tasks": [t.id for t in chosen]})
                continue
            pool.add(c)
            accepted.append((c, chosen))
    return accepted


def _new_tasks(accepted: list[tuple[str, list[SeedTask]]], backend: Backend, cfg: SelfInstructConfig, rnd: int,
               n_machine: int, rejects: list[dict]) -> list[tuple[SeedTask, list[SeedTask], bool | None]]:
    """Classification or not (None: the answer did not parse), then instances, for each
    accepted instruction: (task, its prompt's tasks, is-classification) per instruction
    with instances; one without goes to ``rejects``."""
    P = PROMPTS[cfg.lang]
    clf = backend.chat([ChatRequest(_human(P["clf"].format(instruction=c)), cfg.clf_params) for c, _ in accepted])
    is_clf = [parse_yes_no(r.text or "", cfg.lang) if not r.error else None for r in clf]
    inst_reqs = []
    for (c, _), yes in zip(accepted, is_clf):
        tpl = P["output_first"] if yes else P["input_first"]
        inst_reqs.append(ChatRequest(_human(tpl.format(instruction=c)), cfg.inst_params))
    inst = backend.chat(inst_reqs)
    out: list[tuple[SeedTask, list[SeedTask], bool | None]] = []
    for (c, chosen), yes, r in zip(accepted, is_clf, inst):
        task_id = f"machine_{cfg.seed}_{rnd}_{n_machine + len(out)}"
        instances = parse_instances(r.text or "", bool(yes), cfg.lang) if not r.error else []
        if not instances:
            rejects.append({"instruction": c, "reason": "no_instances_parsed" if not r.error
                            else f"backend_error:{r.error}", "round": rnd, "completion": r.text})
            continue
        out.append((SeedTask(task_id, c, instances[:cfg.max_instances], bool(yes), origin="self_instruct"),
                    chosen, yes))
    return out


def _task_records(task: SeedTask, chosen: list[SeedTask], yes: bool | None, cfg: SelfInstructConfig,
                  rnd: int) -> list[dict]:
    """One instruction record per instance of a new task."""
    records = []
    for j, ex in enumerate(task.instances):
        c = task.instruction
        user = c if not ex["input"] else f"{c}\n\n{ex['input']}"
        records.append(make_record([{"role": "user", "content": user}, {"role": "assistant", "content": ex["output"]}],
                                   cfg.source, origin="self_instruct", parent_id=None, id_parts=(task.id, j),
                                   lang=cfg.lang, task_id=task.id, round=rnd, is_classification=bool(yes),
                                   clf_parsed=yes is not None, parent_ids=[t.id for t in chosen],
                                   generation="output_first" if yes else "input_first",
                                   category="classification" if yes else "uncategorized"))
    return records
