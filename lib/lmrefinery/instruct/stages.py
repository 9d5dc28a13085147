"""Recipe stages for instruction data.

map stages (pure per batch):
  instruct_normalize  per-turn language, shared taxonomy, provenance
  instruct_construct  task-table rows -> instruction pairs through templates
  instruct_filter     pair filters (empty/short, copy, refusal, language mismatch)
global stages (rounds of map tasks; the driver only sees small summaries):
  instruct_dedup      exact duplicates of the prompt (user turns), reusing the
                      exact_dedup rounds (choose/apply); `dedup` and
                      `decontaminate` from the dedup family work on these rows too
  instruct_balance    caps/floors/temperature per category, task, language
  instruct_split      train/validation/test by hash, stratified, near-dup clusters kept together
  instruct_version    pass-through that also writes an immutable dataset version + exports
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Literal

import pyarrow as pa
import xxhash
from pydantic import Field

from ..core import storage
from ..core.parts import finish_part
from ..core.schema import meta_dumps, with_reason
from ..core.stage import BatchResult, Stage, StageParams, register
from ..dedup import exact as exact_mod
from .common import rows_to_table, table_to_rows

# ---------------------------------------------------------------- fingerprints

class _InstructStage(Stage):
    """The stages here are thin: the logic lives in helper modules and conf/
    files, so those are part of the code hash too (an edit re-runs the stage)."""

    @classmethod
    def code_hash(cls) -> str:
        import hashlib

        from ..core.resources import fingerprint_files
        from .common import conf_folder

        h = hashlib.sha256(super().code_hash().encode())
        folder = conf_folder()
        h.update(fingerprint_files(folder, (".txt", ".yaml")))
        h.update(fingerprint_files(folder.joinpath("templates"), (".yaml",)))
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- normalise
class NormalizeParams(StageParams):
    lid_model: str | None = Field(None, description="lid.176 path/URL; default: the model cache")
    taxonomy: str | None = Field(None, description="taxonomy YAML; default: the packaged instruct/data/taxonomy.yaml")
    default_category: str = "uncategorized"
    licences: dict[str, str] = Field(default_factory=dict, description="source (input name) -> licence tag")


@register
class InstructNormalize(_InstructStage):
    name = "instruct_normalize"
    changes_text = True
    Params = NormalizeParams
    params: NormalizeParams
    description = ("Conversation rows: per-turn language (fastText), categories mapped to the shared taxonomy, "
                   "provenance.")

    def setup(self):
        from .normalize import LangID, load_taxonomy

        self.lid = LangID(self.params.lid_model)
        self.tax = load_taxonomy(self.params.taxonomy)
        self.licence_of = {i["name"]: i.get("licence") for i in self.ctx.inputs}
        self.licence_of.update(self.params.licences)

    def process(self, batch: pa.Table) -> BatchResult:
        from .normalize import normalise_row

        if not hasattr(self, "lid"):
            self.setup()
        rows = table_to_rows(batch)
        reasons, c = [], Counter()
        for r in rows:
            if (r["meta"].get("kind") != "conversation") and not r["meta"].get("messages"):
                reasons.append("not_a_conversation")
                continue
            why = normalise_row(r, self.lid, self.tax, self.licence_of.get(r.get("source")),
                                self.params.default_category)
            reasons.append(why)
            if why is None:
                c[f"category:{r['meta']['category']}"] += 1
                c[f"lang:{r.get('lang')}"] += 1
        out = _replace_rows(batch, rows)
        return BatchResult.rewritten(batch, out, self.name, reasons, dict(c))


def _replace_rows(batch: pa.Table, rows: list[dict]) -> pa.Table:
    """Write back text/lang/meta of edited rows; other columns untouched."""
    out = batch
    for col, vals in (("text", [r.get("text") for r in rows]), ("lang", [r.get("lang") for r in rows]),
                      ("meta", [meta_dumps(r["meta"]) for r in rows])):
        i = out.column_names.index(col)
        out = out.set_column(i, col, pa.array(vals, pa.string()))
    return out


# ---------------------------------------------------------------- construct
class ConstructParams(StageParams):
    task: Literal["extractive_qa", "summarization", "nli", "translation", "classification", "dialogue"] | str
    lang: str = Field("en", description="template language (en, zh, or any with templates)")
    columns: dict[str, str] = Field(default_factory=dict, description="task column -> field of the input row")
    label_set: list[str] = Field(default_factory=list, description="classification/NLI labels (rendered as options)")
    template_dirs: list[str] = Field(default_factory=list, description="extra template folders (merged over conf/)")
    source: str | None = None


@register
class InstructConstruct(_InstructStage):
    name = "instruct_construct"
    changes_text = True
    Params = ConstructParams
    params: ConstructParams
    description = ("Task-table rows (typed columns) -> instruction/response conversations through seeded "
                   "Jinja templates.")

    def process(self, batch: pa.Table) -> BatchResult:
        from .templates import construct_row

        p = self.params
        rows = table_to_rows(batch)
        made, reasons = [], []
        for r in rows:
            rec, why = construct_row(r, p.task, p.lang, seed=self.ctx.seed, columns=p.columns,
                                     label_set=p.label_set or None, template_dirs=tuple(p.template_dirs),
                                     source=p.source or r.get("source"))
            reasons.append(why)
            if rec is not None:
                rec["id"] = r["id"]          # one output per input row: keep the row's id
                rec["meta"]["orig_id"] = r["meta"].get("source_id") or r["meta"].get("pos")
                made.append(rec)
        kept = rows_to_table(made)
        rej = [r for r, w in zip(rows, reasons) if w]
        rejected = with_reason(batch.filter(pa.array([w is not None for w in reasons])), self.name,
                               [w for w in reasons if w]) if rej else None
        return BatchResult(kept, rejected, {f"template_task:{p.task}": len(made)})


# ---------------------------------------------------------------- filter
class FilterParams(StageParams):
    min_response_words: int = Field(1, ge=0)
    min_response_chars: int = Field(2, ge=0)
    copy_threshold: float = Field(0.9, gt=0, le=1.01,
                                  description="ROUGE-L(instruction, response) at which the response is a copy")
    refusal_lists: list[str] = Field(default_factory=lambda: ["refusals_en.txt", "refusals_zh.txt"],
                                     description="phrase files: names in the packaged instruct/data "
                                                 "(or $LMR_INSTRUCT_CONF), or paths")
    check_lang: bool = True
    exempt_categories: list[str] = Field(default_factory=lambda: ["translation"])
    lid_model: str | None = None
    max_turn_chars: int | None = Field(32000, ge=1, description="longest turn allowed (characters); null: no limit")
    max_repetition: float = Field(0.5, gt=0, le=1,
                                  description="1 - distinct/total word 4-grams of an answer above which it is a loop")
    repetition_min_words: int = Field(30, ge=4, description="answers shorter than this are not checked for repetition")
    max_ifd: float | None = Field(None, gt=0,
                                  description="reject rows whose meta.ifd (instruct_score) is at least this")
    min_judge_score: float | None = Field(None, description="reject rows whose meta.judge_score is below this")


@register
class InstructFilter(_InstructStage):
    name = "instruct_filter"
    Params = FilterParams
    params: FilterParams
    description = "Reject empty/short responses, copies of the instruction, refusal boilerplate, language mismatch."

    def setup(self):
        from .filters import PairFilter

        p = self.params
        self.f = PairFilter(p.min_response_words, p.min_response_chars, p.copy_threshold, p.refusal_lists,
                            p.check_lang, p.lid_model, tuple(p.exempt_categories), max_turn_chars=p.max_turn_chars,
                            max_repetition=p.max_repetition, repetition_min_words=p.repetition_min_words,
                            max_ifd=p.max_ifd, min_judge_score=p.min_judge_score)

    def process(self, batch: pa.Table) -> BatchResult:
        if not hasattr(self, "f"):
            self.setup()
        rows = table_to_rows(batch)
        return BatchResult.split(batch, self.name, [self.f(r) for r in rows])


# ---------------------------------------------------------------- quality scores
class ScoreParams(StageParams):
    model_dir: str = Field(..., description="local HF causal LM for Instruction-Following Difficulty")
    max_len: int = Field(1024, ge=8, description="tokens of instruction + response scored")
    batch_size: int = Field(8, ge=1)


@register
class InstructScore(_InstructStage):
    name = "instruct_score"
    Params = ScoreParams
    params: ScoreParams
    description = ("Instruction-Following Difficulty with a local causal LM: meta.ifd, loss_with_instruction, "
                   "loss_response_only.")

    def setup(self):
        from .scoring import IFDScorer

        p = self.params
        self.scorer = IFDScorer(p.model_dir, p.max_len, p.batch_size)

    def process(self, batch: pa.Table) -> BatchResult:
        from .scoring import with_scores

        if not hasattr(self, "scorer"):
            self.setup()
        rows = table_to_rows(batch)
        return BatchResult(_replace_rows(batch, with_scores(rows, self.scorer.score(rows))))


# ---------------------------------------------------------------- prompt-keyed exact dedup
class PromptDedupParams(StageParams):
    key: Literal["prompt", "conversation"] = Field("prompt", description="hash the user turns, or all turns")
    prefer_sources: list[str] = Field(default_factory=list)
    buckets: int = Field(8, ge=1, le=4096)


def _prompt_of(meta_json: str, key: str) -> str:
    from ..core.schema import messages_of

    msgs = messages_of(meta_json)
    roles = ("user",) if key == "prompt" else ("system", "user", "assistant")
    return "\n".join(m.get("content") or "" for m in msgs if m.get("role") in roles)


def _prompt_hash_task(t: exact_mod.HashTask[PromptDedupParams]) -> exact_mod.HashResult:
    p = t.params
    tbl = storage.read_parquet(t.input, columns=["id", "text", "source", "meta"])
    pref = {s: i for i, s in enumerate(p.prefer_sources)}
    rows = exact_mod.key_buckets(p.buckets)
    for r, (i, s, m, txt) in enumerate(zip(tbl.column("id").to_pylist(), tbl.column("source").to_pylist(),
                                          tbl.column("meta").to_pylist(), tbl.column("text").to_pylist())):
        body = _prompt_of(m, p.key) or txt or ""
        k = xxhash.xxh3_64_intdigest(exact_mod.normalise_for_hash(body).encode("utf-8"))
        rows[k % p.buckets].append((k, "text", t.part, r, i, pref.get(s, len(pref)), 0))
    exact_mod.write_key_buckets(t, rows)
    return exact_mod.HashResult(t.part, tbl.num_rows)


@register
class InstructDedup(_InstructStage):
    name = "instruct_dedup"
    kind = "global"
    Params = PromptDedupParams
    params: PromptDedupParams
    description = "Exact duplicates of the prompt (user turns) across all inputs, via the exact_dedup rounds."

    def execute(self, job) -> list[dict]:
        return exact_mod.run_exact_rounds(job, self.name, self.params, _prompt_hash_task)


# ---------------------------------------------------------------- balance / split (summary -> decide -> apply)
def _summary_task(t: dict) -> dict:
    from .split import prompt_text

    tbl = storage.read_parquet(t["input"], columns=["id", "source", "lang", "meta"])
    rows = table_to_rows(tbl)
    light = []
    for r in rows:
        m = r["meta"]
        light.append({"id": r["id"], "lang": r.get("lang"), "part": t["part"],
                      "meta": {**{k: m.get(k) for k in ("category", "task", "repeat_of", "origin", "parent_id",
                                                         "pair_id", *t.get("link_fields", ()))},
                               "source": r.get("source")},
                      "prompt": prompt_text(r) if t.get("with_prompt") else ""})
    import json

    storage.write_bytes(storage.join(t["work"], "summary", f"p{t['part']:05d}.json"),
                        json.dumps(light, ensure_ascii=False).encode())
    return {"part": t["part"], "rows": len(light)}


def _decision_apply_task(t: dict) -> dict:
    import json

    t0 = time.time()
    tbl = storage.read_parquet(t["input"])
    dec = json.loads(storage.read_bytes(storage.join(t["work"], "decisions", f"p{t['part']:05d}.json")))
    rows = table_to_rows(tbl)
    reasons, counters = [], Counter()
    for r in rows:
        d = dec.get(r["id"], {})
        if d.get("drop"):
            reasons.append(d["drop"])
            continue
        reasons.append(None)
        for k, v in d.get("set", {}).items():
            r["meta"][k] = v
        for k, v in d.get("set", {}).items():
            counters[f"{k}:{v}"] += 1
    res = BatchResult.split(_replace_rows(tbl, rows), t["stage"], reasons, dict(counters))
    return finish_part(t, [res], tbl.num_rows, t0)


def _summaries(job, work: str, with_prompt: bool, link_fields: tuple[str, ...] = ()) -> list[dict]:
    import json

    base = dict(work=work, stage=job.name, link_fields=list(link_fields))
    job.map(_summary_task, [dict(base, input=p, part=i, with_prompt=with_prompt) for i, p in enumerate(job.inputs)],
            "summary")
    out = []
    for i in range(len(job.inputs)):
        out.extend(json.loads(storage.read_bytes(storage.join(work, "summary", f"p{i:05d}.json"))))
    return out


def _decide_and_apply(job, with_prompt: bool, decide, report_name: str,
                      link_fields: tuple[str, ...] = ()) -> list[dict]:
    """The global instruct stages' rounds: per-part summaries, ``decide(light) ->
    (decisions, report)`` on the driver, per-part application, the report, cleanup."""
    from ..core.manifest import write_json

    work = job.work_dir
    light = _summaries(job, work, with_prompt=with_prompt, link_fields=link_fields)
    decisions, report = decide(light)
    parts = _apply_decisions(job, work, decisions, light)
    write_json(storage.join(job.stage_dir, report_name), report)
    storage.delete_prefix(work)
    return parts


def _apply_decisions(job, work: str, decisions: dict[str, dict], light: list[dict]) -> list[dict]:
    import json

    by_part: dict[int, dict] = {i: {} for i in range(len(job.inputs))}
    for r in light:
        if r["id"] in decisions:
            by_part[r["part"]][r["id"]] = decisions[r["id"]]
    for i, d in by_part.items():
        storage.write_bytes(storage.join(work, "decisions", f"p{i:05d}.json"), json.dumps(d).encode())
    base = dict(work=work, stage=job.name, stage_dir=job.stage_dir, fingerprint=job.fingerprint)
    parts = job.map(_decision_apply_task, [dict(base, input=p, part=i,
                                                input_desc=storage.relpath(p, job.ctx["output_root"]))
                                           for i, p in enumerate(job.inputs)], "apply")
    return parts


class BalanceParams(StageParams):
    by: list[str] = Field(default_factory=lambda: ["category"],
                          description="group fields: category, task, lang, source")
    temperature: float = Field(1.0, gt=0, description="sampling temperature over groups (1 = natural mix)")
    caps: dict[str, int] = Field(default_factory=dict, description="group -> max rows ('*' = every group)")
    floors: dict[str, int] = Field(default_factory=dict, description="group -> min rows (shortfall reported)")
    total: int | None = Field(None, ge=1)
    prefer: str | None = Field(None, description="meta score deciding which rows a downsampled group keeps "
                                                 "(judge_score: highest first; -ifd: lowest first); default a hash")
    upsample: bool = Field(False, description="meet floors (and temperature targets above a group's size) by "
                           "repetition: rows get meta.repeat = copies; instruct_version exports them repeated "
                           "and tokenize writes them that many times")


@register
class InstructBalance(_InstructStage):
    name = "instruct_balance"
    kind = "global"
    Params = BalanceParams
    params: BalanceParams
    description = ("Caps/floors and temperature sampling per category/task/language; before/after in "
                   "balance_report.json.")

    def execute(self, job) -> list[dict]:
        from . import balance as bal

        p = self.params

        def decide(light):
            kept, report = bal.balance(light, p.by, p.temperature, p.caps, p.floors, p.total, upsample=p.upsample,
                                       seed=self.ctx.seed, prefer=p.prefer)
            ids = {r["id"] for r in light}
            keep_ids = {r["id"] for r in kept if r["id"] in ids}
            decisions: dict[str, dict] = {r["id"]: {"drop": "balance_downsampled"} for r in light
                                          if r["id"] not in keep_ids}
            # upsampling: the stage keeps one row per document (in = kept + rejected) and
            # records its multiplicity instead of writing copies
            extra = Counter(r["meta"]["repeat_of"] for r in kept if r["id"] not in ids)
            for i, k in extra.items():
                decisions[i] = {"set": {"repeat": k + 1}}
            report["repeated_rows"] = len(extra)
            report["repeat_copies"] = sum(extra.values())
            return decisions, report

        return _decide_and_apply(job, False, decide, "balance_report.json",
                                 (p.prefer.lstrip("-"),) if p.prefer else ())


class SplitParams(StageParams):
    fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05})
    stratify: str | None = Field("category", description="meta field to stratify by (null: none)")
    near_dup: bool = Field(True, description="keep MinHash near-duplicate clusters of prompts in one split")
    threshold: float = Field(0.7, gt=0, le=1, description="Jaccard of prompt word bigrams for a near duplicate")
    link_fields: list[str] = Field(default_factory=lambda: ["group"],
                                   description="meta fields whose equal values keep rows in one split "
                                               "(pair_id, parent_id and repeat_of always do)")
    previous_version: str | None = Field(None, description="version dir, PREFIX@VERSION or PREFIX: rows already "
                                                           "there keep their split (test never goes to train)")


@register
class InstructSplit(_InstructStage):
    name = "instruct_split"
    kind = "global"
    Params = SplitParams
    params: SplitParams
    description = ("Deterministic train/validation/test (meta.split) by hash, stratified, near-dup clusters "
                   "never straddle.")

    def execute(self, job) -> list[dict]:
        from . import split as spl

        p = self.params

        def decide(light):
            rows = [{"id": r["id"], "meta": r["meta"], "lang": r["lang"],
                     "_prompt": r["prompt"]} for r in light]
            for r in rows:
                r["meta"]["messages"] = [{"role": "user", "content": r.pop("_prompt")}]
            out, report = spl.assign_splits(rows, p.fractions, p.stratify or "", self.ctx.seed, p.near_dup,
                                            p.threshold, tuple(p.link_fields), previous)
            return {r["id"]: {"set": {"split": r["meta"]["split"], "cluster": r["meta"]["cluster"]}}
                    for r in out}, report

        previous = None
        if p.previous_version:
            from .versioning import version_splits

            previous = version_splits(p.previous_version)
        return _decide_and_apply(job, True, decide, "split_report.json", tuple(p.link_fields))


class VersionParams(StageParams):
    prefix: str | None = Field(None, description="dataset prefix (default: <output>/dataset)")
    formats: list[str] = Field(default_factory=lambda: ["alpaca", "messages", "parquet"])
    txt_separator: str = "<sep>"
    name: str | None = None


def _pass_task(t: dict) -> dict:
    t0 = time.time()
    tbl = storage.read_parquet(t["input"])
    return finish_part(t, [BatchResult(tbl)], tbl.num_rows, t0)


def expand_repeats(row: dict) -> list[dict]:
    """A row with ``meta.repeat = k`` (from instruct_balance's upsampling) -> the row and
    k - 1 copies, named and marked as ``instruct build --upsample`` names them."""
    from .balance import repeat_copy

    k = row["meta"].get("repeat")
    if not isinstance(k, int) or isinstance(k, bool) or k <= 1:
        return [row]
    base = {**row, "meta": {key: v for key, v in row["meta"].items() if key != "repeat"}}
    return [base] + [repeat_copy(base, j) for j in range(1, k)]


@register
class InstructVersion(_InstructStage):
    name = "instruct_version"
    kind = "global"
    Params = VersionParams
    params: VersionParams
    description = ("Pass rows through and write an immutable, content-addressed dataset version with exports "
                   "and a manifest.")

    def execute(self, job) -> list[dict]:
        from .versioning import build_version

        p = self.params
        base = dict(stage=self.name, stage_dir=job.stage_dir, fingerprint=job.fingerprint)
        parts = job.map(_pass_task, [dict(base, input=x, part=i, input_desc=storage.relpath(x, job.ctx["output_root"]))
                                     for i, x in enumerate(job.inputs)], "pass")
        rows = []
        for part in parts:
            for r in table_to_rows(storage.read_parquet(storage.join(job.stage_dir, part["output"]["path"]))):
                rows.extend(expand_repeats(r))
        prefix = p.prefix or storage.join(job.ctx["output_root"], "dataset")
        srcs = [pth for i in job.ctx.get("inputs", []) for pth in i.get("paths", [])]
        recipe = {"run": job.ctx.get("run_name"), "fingerprint": job.fingerprint}
        m = build_version(rows, prefix, recipe=recipe, sources=srcs, formats=tuple(p.formats), sep=p.txt_separator,
                          name=p.name or job.ctx.get("run_name", "instruct"))
        for part in parts:
            part["version"] = m["version"]
        return parts
