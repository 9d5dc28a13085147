"""`lmrefinery tokenizer train ...` and `lmrefinery inspect PATH`."""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from ..core import storage


def guess_lang(text: str) -> str:
    """Only for reporting tokens/char when documents carry no `lang`: zh when CJK
    ideographs make up at least a third of the letters, en otherwise."""
    cjk = sum(1 for c in text[:2000] if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf")
    letters = sum(1 for c in text[:2000] if c.isalpha())
    return "zh" if letters and cjk / letters >= 0.33 else "en"


def _read_docs(paths: list[str], fmt: str | None, fields: dict) -> list[tuple[str, str, str]]:
    """(source, lang, text) for every document of every input file."""
    from ..core.schema import messages_of
    from ..ingest.formats import Record, get_reader

    out = []
    for pattern in paths:
        files = storage.list_files(pattern)
        if not files:
            raise FileNotFoundError(f"no files match {pattern}")
        for p in files:
            f = fmt or ("parquet" if p.endswith(".parquet") else "text" if p.endswith(".txt") else "jsonl")
            src = os.path.basename(p).split(".")[0]
            spec = {"path": p, "rel": os.path.basename(p), "input": src, "format": f, "fields": fields,
                    "options": {}, "licence": None}
            for item in get_reader(f)(spec):
                if not isinstance(item, Record):
                    continue
                d = item.doc
                text = d.get("text") or ""
                msgs = messages_of(d.get("meta") or {})
                if msgs:
                    text = "\n".join(m.get("content") or "" for m in msgs)
                if text.strip():
                    lang = (d.get("lang") or guess_lang(text)).split("-")[0].lower()
                    out.append((src, lang, text))
    return out


def cmd_tokenizer_train(a) -> int:
    import xxhash

    from .tokenizer import load_encoder, save_hf, tokens_per_char, train_bpe

    fields = {}
    for kv in a.field or []:
        k, _, v = kv.partition("=")
        fields[k] = v
    docs = _read_docs(a.input, a.format, fields)
    if not docs:
        print("lmrefinery: error: no documents in the input", file=sys.stderr)
        return 2
    # equal share per (source, lang) group, chosen by hash; the rest is held out for the report
    groups: dict[tuple, list] = {}
    for i, (s, lg, t) in enumerate(docs):
        groups.setdefault((s, lg), []).append((xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass"),
                                                                         seed=a.seed), i))
    for g in groups.values():
        g.sort()
    per = max(1, a.sample_docs // len(groups))
    chosen, held = [], []
    spare = a.sample_docs - per * len(groups)
    for key in sorted(groups):
        g = groups[key]
        take = min(len(g), per)
        chosen += [i for _, i in g[:take]]
        held += [i for _, i in g[take:]]
    if spare > 0 and held:
        held.sort()
        chosen += held[:spare]
        held = held[spare:]
    texts = [docs[i][2][: a.max_chars] for i in sorted(chosen)]
    specials = {}
    for k in ("eos", "bos", "pad", "eot"):
        v = getattr(a, f"{k}_token")
        if v:
            specials[k] = v
    tok = train_bpe(texts, vocab_size=a.vocab_size, min_frequency=a.min_frequency, specials=specials)
    held_docs = [docs[i] for i in held] or [docs[i] for i in chosen]
    stats = {"sample_docs": len(texts), "sample_chars": sum(len(t) for t in texts),
             "groups": {f"{s}/{lg}": len(v) for (s, lg), v in sorted(groups.items())},
             "vocab_size": tok.get_vocab_size()}
    save_hf(tok, a.output, specials=specials, extra={"trained_on": stats})
    enc = load_encoder(a.output)
    report = {}
    for lg in sorted({d[1] for d in held_docs}):
        sample = [d[2] for d in held_docs if d[1] == lg][:500]
        report[lg] = tokens_per_char(enc, sample)
    stats["tokens_per_char_heldout"] = report
    with open(os.path.join(a.output, "lmrefinery_tokenizer.json"), encoding="utf-8") as f:
        side = json.load(f)
    side["tokens_per_char_heldout"] = report
    with open(os.path.join(a.output, "lmrefinery_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(side, f, indent=1, ensure_ascii=False, sort_keys=True)
    print(json.dumps({"output": a.output, **stats}, indent=1, ensure_ascii=False))
    return 0


# ---------------------------------------------------------------- inspect
def find_dataset(path: str) -> str | None:
    """dataset.json for: the file itself, a stage dir, or a run dir (its tokenize stage)."""
    if path.endswith(".json"):
        return path
    cand = storage.join(path.rstrip("/"), "dataset.json")
    if storage.exists(cand):
        return cand
    stages = storage.join(path.rstrip("/"), "stages")
    if not storage.is_s3(path) and os.path.isdir(stages):
        for d in sorted(os.listdir(stages), reverse=True):
            c = os.path.join(stages, d, "dataset.json")
            if d.endswith("-tokenize") and os.path.exists(c):
                return c
    return None


def summarise(m: dict) -> str:
    tk = m["tokenizer"]
    lines = [f"dataset: {m.get('run')}  format {m['format']} v{m['version']}  dtype {m['dtype']}  seed {m['seed']}"
             f"  loss mask: {'yes' if m.get('has_loss_mask') else 'no'}",
             f"tokenizer: {tk['path']} ({tk['source']})  vocab {tk['vocab_size']}  eos {tk['eos_id']}  "
             f"sha256 {tk['sha256'][:16]}"]
    if m.get("tokens_per_char"):
        lines.append("tokens/char: " + ", ".join(f"{k}={v}" for k, v in m["tokens_per_char"].items()))
    for sp, d in m["splits"].items():
        lines.append(f"{sp}: {d['documents']:,} documents, {d['tokens']:,} tokens, {len(d['shards'])} shards")
        for s, v in d["by_source"].items():
            share = v["tokens"] / d["tokens"] if d["tokens"] else 0
            lines.append(f"    {s:<20} {v['documents']:>10,} docs {v['tokens']:>14,} tokens  {share:6.1%}")
    mx = m.get("mixing") or {}
    if mx.get("mode") and mx["mode"] != "none":
        lines.append(f"mixing ({mx['mode']}):")
        for s in sorted(mx["achieved"]):
            tgt = (mx.get("target") or {}).get(s)
            lines.append(f"    {s:<20} factor {mx['factors'][s]:<8} target {tgt if tgt is not None else '-':<8} "
                         f"achieved {mx['achieved'][s]}")
    dc = m.get("documents", {})
    if dc:
        lines.append("documents: " + ", ".join(f"{k}={v}" for k, v in dc.items()))
    return "\n".join(lines)


def render(enc, ids: np.ndarray, mask: np.ndarray | None, show_mask: bool) -> str:
    if not show_mask or mask is None or mask.all():
        return enc.decode(ids)
    out, i = [], 0
    while i < len(ids):
        j = i
        while j < len(ids) and mask[j] == mask[i]:
            j += 1
        txt = enc.decode(ids[i:j])
        out.append(f"[[{txt}]]" if mask[i] else txt)
        i = j
    return "".join(out)


def cmd_inspect(a) -> int:
    from .indexed import IndexedShard
    from .reader import load_dataset_manifest
    from .tokenizer import fetch_tokenizer, load_encoder

    ds = find_dataset(a.path)
    rng = np.random.default_rng(a.seed)
    if ds is None:
        # a bare shard prefix: needs --tokenizer
        prefix = a.path[:-4] if a.path.endswith((".bin", ".idx")) else a.path
        sh = IndexedShard(prefix)
        print(f"shard {prefix}: {len(sh)} documents, {sh.num_tokens} tokens, dtype {sh.dtype}, "
              f"mask {'yes' if sh.has_mask else 'no'}")
        if not a.tokenizer:
            return 0
        enc = load_encoder(a.tokenizer)
        shards = [(prefix, sh)]
    else:
        m, base = load_dataset_manifest(ds)
        print(summarise(m))
        if a.verify:
            bad = 0
            for d in m["splits"].values():
                for s in d["shards"]:
                    for sfx, f in s["files"].items():
                        p = storage.join(base, s["prefix"] + sfx)
                        if storage.sha256(storage.read_bytes(p)) != f["sha256"]:
                            print(f"CHECKSUM MISMATCH {p}")
                            bad += 1
            print(f"verify: {'all shard checksums match' if not bad else f'{bad} files differ'}")
            if bad:
                return 1
        tok_dir = storage.join(base, m["tokenizer"]["path"])
        if storage.is_s3(tok_dir):
            import tempfile

            tok_dir = fetch_tokenizer(tok_dir, tempfile.mkdtemp(prefix="lmr-tok-"))
        enc = load_encoder(a.tokenizer or tok_dir)
        shards = [(s["prefix"], IndexedShard(storage.join(base, s["prefix"])))
                  for s in m["splits"].get(a.split, {}).get("shards", [])]
    if a.samples <= 0 or not shards:
        return 0
    sizes = np.array([len(s) for _, s in shards])
    total = int(sizes.sum())
    print(f"\n{min(a.samples, total)} sampled documents from {a.split} (seed {a.seed}):")
    for g in sorted(rng.choice(total, size=min(a.samples, total), replace=False)):
        k = int(np.searchsorted(np.cumsum(sizes), g, side="right"))
        i = int(g - (np.cumsum(sizes)[k - 1] if k else 0))
        name, sh = shards[k]
        ids = sh.get(i)
        mask = sh.get_mask(i) if sh.has_mask else None
        text = render(enc, ids, mask, a.show_mask)
        if a.chars and len(text) > a.chars:
            text = text[: a.chars] + f" ... [{len(text) - a.chars} more chars]"
        print(f"--- {name}#{i}  {len(ids)} tokens" + (f", {int(mask.sum())} trained" if mask is not None else ""))
        print(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("tokenizer", help="tokenizer tools")
    tsub = p.add_subparsers(dest="tokenizer_cmd", required=True)
    t = tsub.add_parser("train", help="train a byte-level BPE tokenizer (HF directory with a chat template)")
    t.add_argument("--input", nargs="+", required=True, help="files/globs: jsonl, parquet (our schema or text), txt")
    t.add_argument("--output", required=True, help="directory to write (AutoTokenizer.from_pretrained loads it)")
    t.add_argument("--format", help="input format (default: by extension)")
    t.add_argument("--field", action="append", help="our=theirs field mapping, e.g. text=content")
    t.add_argument("--vocab-size", type=int, default=32000, help="vocabulary size incl. special tokens (default 32000)")
    t.add_argument("--sample-docs", type=int, default=20000, help="documents sampled to train on (default 20000)")
    t.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency for a merge (default 2)")
    t.add_argument("--max-chars", type=int, default=20000, help="cut longer sampled documents")
    t.add_argument("--seed", type=int, default=0, help="seed of the document sample (default 0)")
    for k in ("eos", "bos", "pad", "eot"):
        t.add_argument(f"--{k}-token", help=f"the {k} special token (default: the built-in one)")
    t.set_defaults(fn=cmd_tokenizer_train)

    p = sub.add_parser("inspect", help="summarise a token dataset and decode sampled documents")
    p.add_argument("path", help="dataset.json, a tokenize stage dir, a run dir, or a shard prefix")
    p.add_argument("--split", default="train", help="split to summarise and sample (default train)")
    p.add_argument("--samples", type=int, default=3, help="documents to decode and print (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the document sample (default 0)")
    p.add_argument("--chars", type=int, default=600, help="truncate decoded text (0 = never)")
    p.add_argument("--show-mask", action="store_true", help="wrap loss-masked (trained) spans in [[ ]]")
    p.add_argument("--verify", action="store_true", help="check every shard file's sha256")
    p.add_argument("--tokenizer", help="tokenizer to decode with (default: the dataset's)")
    p.set_defaults(fn=cmd_inspect)
