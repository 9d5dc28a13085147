"""The tokenize plan, decided on the driver between encode and scatter from the small
columns of `_work/enc/` only: how many copies of each train document to write (mixing)
and how many shards each split gets."""
from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.stage import StageDataError
from .params import Mixing
from .work import TokenizeRun, part_file, read_work

SPLITS = ("train", "valid")


class EmptySourceError(StageDataError):
    """A mixed source lost every document before tokenize."""


@dataclass(frozen=True)
class Plan:
    mixing: dict[str, Any]        # plan_mixing's answer (its "plan": per-source copies)
    n_shards: dict[str, int]      # split -> shards


def empty_sources(names: list[str], mode: str, weights: dict[str, float], input_weights: dict[str, float]) -> list[str]:
    """Sources given a positive mixing weight (in `mix.weights` or an input's `weight`) that
    have no train documents."""
    if mode == "none":
        return []
    wanted = {s for s, w in {**input_weights, **weights}.items() if w and w > 0}
    return sorted(wanted - set(names))


def _check_empty(names: list[str], mix: Mixing, input_weights: dict[str, float]) -> list[str]:
    lost = empty_sources(names, mix.mode, mix.weights, input_weights)
    if lost and mix.on_empty_source == "error":
        raise EmptySourceError(
            f"tokenize: mixed source(s) {lost} have no train documents left (every document was rejected by an "
            "earlier stage; stats.json and `lmrefinery rejects` show by which). Fix the recipe (e.g. give that "
            "source its own stages with `sources:`), or set tokenize mix.on_empty_source: warn to go on without "
            "them, the other weights rescaled")
    if lost:
        print(f"WARNING tokenize: mixed source(s) {lost} have no train documents; the other weights are "
              "rescaled (mix.on_empty_source: warn)", file=sys.stderr, flush=True)
    return lost


def _fill_budget(keys: np.ndarray, ntok: np.ndarray, budget: float, max_scan: int) -> tuple[int, list[int], int]:
    """Fill a token budget in key order (`keys`, `ntok` sorted by key): the longest prefix
    that fits, then first fit over the next `max_scan` documents, then one more document
    if overshooting lands closer than stopping short. Returns (threshold, extra keys, used)."""
    incl = np.cumsum(ntok)
    take = int(np.searchsorted(incl, budget + 1e-9, side="right")) if budget > 0 else 0
    used = int(incl[take - 1]) if take else 0
    threshold = int(keys[take - 1]) if take else -1
    extra: list[int] = []
    left_out: list[int] = []
    if budget > 0 and budget - used >= 1:
        for j in range(take, min(len(keys), take + max_scan)):
            n = int(ntok[j])
            if used + n <= budget:
                extra.append(int(keys[j]))
                used += n
                if budget - used < 1:
                    break
            else:
                left_out.append(j)
        if left_out and budget - used >= 1:
            j = min(left_out, key=lambda x: (int(ntok[x]), x))
            if used + int(ntok[j]) - budget < budget - used:
                extra.append(int(keys[j]))
                used += int(ntok[j])
    return threshold, sorted(extra), used


def plan_mixing(table: pa.Table, mix: Mixing | Mapping[str, Any], input_weights: dict[str, float],
                max_scan: int = 200_000) -> dict[str, Any]:
    """Decide how many copies of each train document to write.

    `table` has the train documents' source, n_tokens and mixkey (and optionally
    repeat, a document's own multiplicity: its tokens count that many times and
    each of its mixing copies is written that many times). A source with
    factor f (target tokens / natural tokens) gets floor(f) copies of every
    document. The fractional part f - floor(f) is a token budget, filled in hash
    order (`_fill_budget`). The share is hit within half a document and the choice
    depends only on the seed and the documents.
    Plan per source: {"base", "threshold", "extra": [mixkeys beyond the prefix], "factor"}."""
    mix = mix if isinstance(mix, Mixing) else Mixing.model_validate(mix)
    srcs = table.column("source")
    ntok_all = table.column("n_tokens").to_numpy()
    if "repeat" in table.column_names:   # a document repeated k times weighs k times its tokens
        ntok_all = ntok_all * table.column("repeat").to_numpy()
    keys_all = table.column("mixkey").to_numpy()
    names = sorted(x for x in pc.unique(srcs).to_pylist() if x is not None) if table.num_rows else []
    idx = {s: np.flatnonzero(pc.equal(srcs, s).to_numpy(zero_copy_only=False)) for s in names}
    natural = {s: int(ntok_all[ix].sum()) for s, ix in idx.items()}
    mode = mix.mode
    lost = _check_empty(names, mix, input_weights)
    weights = {s: float(mix.weights.get(s, input_weights.get(s, 0.0 if mode == "proportions" else 1.0)))
               for s in names} if mode != "none" else {s: 1.0 for s in names}
    target: dict[str, float] | None = None
    if mode == "proportions":
        wsum = sum(weights.values())
        if wsum <= 0:
            raise ValueError("mix: proportions need positive weights for at least one source")
        target = {s: w / wsum for s, w in weights.items()}
        want = mix.total_tokens or sum(natural.values())
        factor = {s: (target[s] * want / natural[s]) if natural[s] else 0.0 for s in names}
    else:
        factor = {s: weights[s] for s in names}
    plan, achieved_tokens = {}, {}
    for s, ix in idx.items():
        f = max(0.0, factor[s])
        base = int(math.floor(f + 1e-9))
        order = ix[np.argsort(keys_all[ix], kind="stable")]
        threshold, extra, used = _fill_budget(keys_all[order], ntok_all[order].astype(np.int64),
                                              (f - base) * natural[s], max_scan)
        plan[s] = {"base": base, "threshold": threshold, "extra": extra, "factor": round(f, 6)}
        achieved_tokens[s] = base * natural[s] + used
    out_total = sum(achieved_tokens.values())
    return {"mode": mode, "weights": weights, "plan": plan, "empty_sources": lost,
            "natural": {s: {"documents": len(idx[s]), "tokens": natural[s]} for s in names},
            "target": {s: round(v, 6) for s, v in sorted(target.items())} if target else None,
            "achieved": {s: round(achieved_tokens[s] / out_total, 6) if out_total else 0.0 for s in names},
            "output_tokens": {s: int(v) for s, v in sorted(achieved_tokens.items())}}


def copies_of(source: str, mixkey: int, plan: dict[str, Any]) -> int:
    """Copies of a train document under a mixing plan (`plan["extra"]` may be a set)."""
    pl = plan.get(source)
    if pl is None:
        return 1
    return int(pl["base"]) + (1 if mixkey <= pl["threshold"] or mixkey in pl["extra"] else 0)


def plan_rounds(run: TokenizeRun, n_parts: int, input_weights: dict[str, float]) -> Plan:
    """Mixing over the train documents and shard counts, from the encoded parts' small columns."""
    cols = ["source", "split", "empty", "n_tokens", "mixkey", "repeat"]
    meta = [read_work(run.work_file("enc", part_file(i)), columns=cols) for i in range(n_parts)]
    allm = pa.concat_tables(meta) if meta else pa.table({c: [] for c in cols})
    ok = allm.filter(pc.invert(allm.column("empty")))
    train = ok.filter(pc.equal(ok.column("split"), "train"))
    valid = ok.filter(pc.equal(ok.column("split"), "valid"))
    mixing = plan_mixing(train, run.params.mix, input_weights)
    tokens = {"train": sum(mixing["output_tokens"].values()),
              "valid": int(pc.sum(valid.column("n_tokens")).as_py() or 0)}
    shard_tokens = run.params.shard_tokens
    return Plan(mixing, {sp: max(1, math.ceil(tokens[sp] / shard_tokens)) for sp in SPLITS})
