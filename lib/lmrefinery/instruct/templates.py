"""Automatic construction of instruction pairs from task tables (the FLAN /
PromptSource idea): a row with typed columns + a task type + Jinja templates
-> one (instruction, response) conversation per row.

Templates live in the packaged ``instruct/data/templates/<task>.yaml`` (``templates: {lang:
[{id, instruction, response}]}``); user directories given in
``template_dirs`` are merged on top (same task: templates appended; same id:
replaced). The template for each row is chosen by a hash of (seed, row id), so
a build is reproducible and independent of the worker count. Classification
and NLI templates get ``options`` (the label set, in a per-row seeded order)
and ``label_text`` (the label in the template's language).
"""
from __future__ import annotations

import random
from functools import lru_cache

import jinja2
import yaml

from ..core.resources import config_folder, files_in
from .common import conf_folder, make_record, stable_hash

TASK_TYPES = ("extractive_qa", "summarization", "nli", "translation", "classification", "dialogue")
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


class TemplateError(ValueError):
    pass


@lru_cache(maxsize=16)
def load_templates(template_dirs: tuple[str, ...] = ()) -> dict[str, dict]:
    specs: dict[str, dict] = {}
    folders = [conf_folder().joinpath("templates")]
    folders += [config_folder(d, "", __package__) for d in template_dirs]  # must exist
    for d in folders:
        for f in files_in(d, (".yaml",)):
            spec = yaml.safe_load(f.read_text(encoding="utf-8"))
            task = spec.get("task") or f.name.rsplit(".", 1)[0]
            cur = specs.setdefault(task, {"task": task, "templates": {}})
            for k, v in spec.items():
                if k != "templates":
                    cur[k] = v
            for lang, tpls in (spec.get("templates") or {}).items():
                have = cur["templates"].setdefault(lang, [])
                for t in tpls:
                    if "id" not in t:
                        raise TemplateError(f"{f}: every template needs an id")
                    have[:] = [x for x in have if x["id"] != t["id"]] + [t]
    for spec in specs.values():
        for tpls in spec["templates"].values():
            for t in tpls:
                for key in ("instruction", "response"):
                    if key in t:
                        t["_" + key] = _ENV.from_string(t[key])
    return specs


def _get(row: dict, col: str):
    meta = row.get("meta") or {}
    if col in meta:
        return meta[col]
    return row.get(col)


def construct_row(row: dict, task: str, lang: str, *, seed: int = 0, columns: dict | None = None,
                  label_set: list | None = None, template_dirs: tuple = (), source: str | None = None,
                  template_id: str | None = None) -> tuple[dict | None, str | None]:
    """One task-table row -> (conversation record, None) or (None, reject reason)."""
    specs = load_templates(tuple(template_dirs))
    if task not in specs:
        raise TemplateError(f"unknown task type {task!r}; known: {', '.join(sorted(specs))}")
    spec = specs[task]
    tpls = spec["templates"].get(lang) or []
    if not tpls:
        raise TemplateError(f"task {task!r} has no templates for language {lang!r}")
    columns = columns or {}
    vals = {}
    for col in spec.get("columns", []):
        v = _get(row, columns.get(col, col))
        if v is None and col in ("source_lang", "target_lang"):
            continue
        if v is None or (isinstance(v, str) and not v.strip()):
            return None, f"missing_column:{col}"
        vals[col] = v
    key = row.get("id") or str(vals)
    rng = random.Random(stable_hash(seed, task, key))
    if template_id:
        tpl = next((t for t in tpls if t["id"] == template_id), None)
        if tpl is None:
            raise TemplateError(f"no template {template_id!r} for {task}/{lang}")
    else:
        tpl = tpls[rng.randrange(len(tpls))]
    ctx = dict(vals)
    if task in ("classification", "nli"):
        labels = list(label_set or spec.get("label_set") or [])
        if not labels:
            return None, "no_label_set"
        if vals["label"] not in labels:
            return None, f"label_not_in_set:{vals['label']}"
        names = (spec.get("label_names") or {}).get(lang, {})
        opts = [names.get(str(x), str(x)) for x in labels]
        rng.shuffle(opts)
        ctx["options"] = opts
        ctx["label_text"] = names.get(str(vals["label"]), str(vals["label"]))
    if task == "translation":
        names = (spec.get("lang_names") or {}).get(lang, {})
        sl, tl = vals.get("source_lang") or "en", vals.get("target_lang") or "zh"
        ctx.update(source_lang=sl, target_lang=tl, source_lang_name=names.get(sl, sl),
                   target_lang_name=names.get(tl, tl))
    if task == "dialogue":
        turns = [str(t) for t in vals["turns"] if str(t).strip()]
        if len(turns) < 2:
            return None, "dialogue_too_short"
        ctx.update(history=turns[:-1], last=turns[-1])
    if tpl.get("mode") == "turns":
        turns = ctx["history"] + [ctx["last"]]
        # the response must be an assistant turn: the speaker of the last turn is the assistant
        start = "user" if len(turns) % 2 == 0 else "assistant"
        msgs, role = [], start
        for t in turns:
            msgs.append({"role": role, "content": t})
            role = "assistant" if role == "user" else "user"
        if msgs[0]["role"] == "assistant":
            msgs = msgs[1:]
    else:
        try:
            ins = tpl["_instruction"].render(**ctx).strip()
            resp = tpl["_response"].render(**ctx).strip()
        except jinja2.UndefinedError as e:
            raise TemplateError(f"template {tpl['id']}: {e}") from None
        msgs = [{"role": "user", "content": ins}, {"role": "assistant", "content": resp}]
    rec = make_record(msgs, source or row.get("source") or "tasks", origin="template", parent_id=row.get("id"),
                      id_parts=(task, tpl["id"]), lang=lang, task=task, template=tpl["id"],
                      category=(task_category(task)), licence=(row.get("meta") or {}).get("licence"))
    return rec, None


def task_category(task: str) -> str:
    from .normalize import load_taxonomy

    return load_taxonomy()["maps"].get("task", {}).get(task, "other")


def construct(rows: list[dict], task: str, lang: str, **kw) -> tuple[list[dict], list[tuple[dict, str | None]]]:
    out: list[dict] = []
    rejected: list[tuple[dict, str | None]] = []
    for r in rows:
        rec, why = construct_row(r, task, lang, **kw)
        if rec is None:
            rejected.append((r, why))
        else:
            out.append(rec)
    return out, rejected
