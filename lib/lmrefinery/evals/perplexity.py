"""Perplexity of an HF causal LM on documents.

Definition (what every number here means): each document is encoded on its own
(the tokenizer's own special tokens, then EOS appended unless it is already last,
as the tokenize stage writes documents). A document of n tokens is scored in
windows of at most ``context`` tokens that start every ``stride`` tokens (the
Hugging Face "sliding window" scheme): a token is scored at most once, in the
first window that reaches it, conditioned on the window's tokens before it; a
window's first token has no context and is never scored. stride < context: every
token but the document's first is scored (n - 1), with at least ``context -
stride`` tokens of context after the first window. stride == context (the
default): independent chunks, each scoring its length - 1 tokens.

The result is token-weighted over all documents: nats/token = summed NLL /
scored tokens, perplexity = exp(nats/token). Documents from a tokenize-stage
split are scored from their stored ids as they are (EOS already appended).
"""
from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..core import storage


@dataclass(frozen=True)
class PerplexityResult:
    name: str                 # a label for the data (file name, split, held-out set)
    docs: int
    tokens: int               # scored tokens (sum over documents of n - 1)
    chars: int | None         # characters of the scored texts (None for token ids)
    nll: float                # summed negative log-likelihood, nats
    nats_per_token: float
    ppl: float
    context: int
    stride: int

    @property
    def nats_per_char(self) -> float | None:
        return self.nll / self.chars if self.chars else None

    def to_dict(self) -> dict:
        return asdict(self) | {"nats_per_char": self.nats_per_char}


def read_texts(path: str, text_field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of a JSONL (optionally .gz) or Parquet file, or of every such file under a
    folder / glob (sorted), local or s3://. Empty texts are skipped."""
    files = _data_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no .jsonl/.jsonl.gz/.parquet files")
    out: list[str] = []
    for f in files:
        for t in _file_texts(f, text_field):
            if t and t.strip():
                out.append(t)
                if limit is not None and len(out) >= limit:
                    return out
    return out


def _data_files(path: str) -> list[str]:
    if any(c in path for c in "*?["):
        return sorted(storage.list_files(path))
    if path.endswith((".jsonl", ".jsonl.gz", ".json", ".parquet")):
        return [path]
    found = storage.list_files(path.rstrip("/") + "/**")
    return sorted(f for f in found if f.endswith((".jsonl", ".jsonl.gz", ".parquet")))


def _file_texts(path: str, field: str) -> list[str]:
    data = storage.read_bytes(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(data), columns=[field])
        return [x for x in t.column(field).to_pylist()]
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    rows = []
    for k, line in enumerate(data.decode("utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line)[field])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: line {k + 1}: no {field!r} field ({type(e).__name__})") from None
    return rows


def split_token_docs(source: str, split: str = "train", limit: int | None = None) -> list[np.ndarray]:
    """The documents of a tokenize-stage output split (dataset.json or its folder) as ids."""
    from ..tokenize.indexed import IndexedShard
    from ..tokenize.reader import resolve_shards

    prefixes, _ = resolve_shards(source, split)
    docs: list[np.ndarray] = []
    for p in prefixes:
        sh = IndexedShard(p)
        for i in range(len(sh)):
            docs.append(np.asarray(sh.get(i), np.int64))
            if limit is not None and len(docs) >= limit:
                return docs
    return docs


def encode_texts(tok, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text with the tokenizer's special tokens, EOS appended unless already last."""
    eos = tok.eos_token_id
    out = []
    for ids in tok(list(texts), add_special_tokens=True)["input_ids"]:
        if eos is not None and (not ids or ids[-1] != eos):
            ids = list(ids) + [eos]
        out.append(np.asarray(ids, np.int64))
    return out


def windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window over a document of n tokens."""
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in 1..context ({context}), got {stride}")
    out, prev_end, begin = [], 1, 0
    while n > 1:
        end = min(begin + context, n)
        if end > prev_end:
            out.append((begin, end, prev_end))
            prev_end = end
        if end == n:
            break
        begin += stride
    return out


def score_docs(model, docs: Sequence[np.ndarray], context: int, stride: int,
               batch_tokens: int = 8192) -> tuple[float, int]:
    """(summed NLL in nats, scored tokens) of ``docs`` under ``model``."""
    import torch

    items = [(d, w) for d in docs for w in windows(len(d), context, stride)]
    items.sort(key=lambda x: x[1][1] - x[1][0], reverse=True)
    dev = next(model.parameters()).device
    nll, count = 0.0, 0
    i = 0
    model.eval()
    with torch.no_grad():
        while i < len(items):
            width = items[i][1][1] - items[i][1][0]
            bs = max(1, batch_tokens // max(width, 1))
            batch, i = items[i:i + bs], i + bs
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            att = torch.zeros_like(ids)
            tgt = torch.full_like(ids, -100)
            for r, (d, (b, e, s)) in enumerate(batch):
                ids[r, :e - b] = torch.as_tensor(d[b:e])
                att[r, :e - b] = 1
                tgt[r, s - b:e - b] = ids[r, s - b:e - b]
            logits = model(input_ids=ids.to(dev), attention_mask=att.to(dev)).logits[:, :-1]
            t = tgt[:, 1:].to(dev)
            nll += float(torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                           t.reshape(-1), ignore_index=-100, reduction="sum"))
            count += int((t != -100).sum())
    return nll, count


def load_model(model_dir: str, device: str | None = None):
    """(model, tokenizer) of an HF causal-LM directory (local or s3://), fp32, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..train.export import load_tokenizer
    from ..train.files import download_dir

    local = download_dir(model_dir)
    tok = load_tokenizer(local)
    model = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(torch.device(dev)).eval(), tok  # type: ignore[arg-type]  # transformers types .to as a wrapper


def default_context(model, context: int | None) -> int:
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 1024)
    return min(context or 1024, limit)


def perplexity(model_dir: str, *, texts: Sequence[str] | None = None, token_docs: Sequence[np.ndarray] | None = None,
               name: str = "data", context: int | None = None, stride: int | None = None,
               batch_tokens: int = 8192, model=None, tok=None) -> PerplexityResult:
    """Perplexity of the model in ``model_dir`` on ``texts`` (encoded here) or on
    ``token_docs`` (ids as stored). ``context`` defaults to min(1024, the model's
    maximum positions); ``stride`` to ``context``. An already loaded (model, tok)
    may be passed to score several data sets without reloading."""
    if (texts is None) == (token_docs is None):
        raise ValueError("give texts or token_docs")
    if model is None or tok is None:
        model, tok = load_model(model_dir)
    ctx = default_context(model, context)
    st = stride or ctx
    docs = encode_texts(tok, texts) if texts is not None else list(token_docs or [])
    nll, n = score_docs(model, docs, ctx, st, batch_tokens)
    npt = nll / n if n else float("nan")
    return PerplexityResult(name=name, docs=len(docs), tokens=n,
                            chars=sum(len(t) for t in texts) if texts is not None else None, nll=nll,
                            nats_per_token=npt, ppl=math.exp(min(npt, 700)) if n else float("nan"),
                            context=ctx, stride=st)
