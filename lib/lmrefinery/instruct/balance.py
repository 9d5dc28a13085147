"""Balancing by category, task and language.

Quotas per group (a group is the tuple of the ``by`` fields, e.g. category or
(category, lang)):
 1. temperature sampling over groups: target share p_g ~ n_g^(1/T) (T=1 keeps
    the natural mix, larger T flattens it). Without ``total``, the total is the
    largest one that needs no upsampling (N = min_g n_g / p_g: exact shares,
    but a tiny group makes it small); with ``total``, groups too small for their
    share keep all their rows and the rest of the budget is shared by the others
    in proportion (water-filling), so the result has ``total`` rows when possible;
 2. ``caps``: at most this many per group (``{"*": 1000, "coding": 200}``);
 3. ``floors``: at least this many - below it, rows are repeated when
    ``upsample`` (repeats carry ``repeat_of`` so splits keep them together),
    otherwise the shortfall is reported.
Which rows survive is decided by a hash of (seed, id): deterministic,
independent of order, engine and worker count. ``plan`` works on counts (so a
distributed stage can count in parallel), ``apply_plan`` on rows.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from .common import unit_hash


def group_of(row: dict, by: list[str]) -> str:
    """Group key of a row: `lang` and `source` are row columns, the rest meta fields."""
    vals = []
    for f in by:
        v = row.get(f) if f in ("lang", "source") else None
        if v is None:
            v = row["meta"].get(f)
        vals.append(str(v if v is not None else "unknown"))
    return "|".join(vals)


def _lookup(d: dict, g: str):
    if g in d:
        return d[g]
    return d.get("*")


def plan(counts: dict[str, int], temperature: float = 1.0, caps: dict | None = None, floors: dict | None = None,
         total: int | None = None, upsample: bool = False) -> dict[str, dict]:
    """Per group: {"n": available, "target": rows wanted, "keep": fraction of rows kept (<=1),
    "repeat": extra copies (upsampling), "short": floor shortfall}."""
    caps, floors = caps or {}, floors or {}
    groups = {g: n for g, n in counts.items() if n > 0}
    if not groups:
        return {}
    w = {g: n ** (1.0 / max(temperature, 1e-6)) for g, n in groups.items()}
    z = sum(w.values())
    p = {g: w[g] / z for g in groups}
    if total is None:
        total_f = min(groups[g] / p[g] for g in groups) if temperature != 1.0 else float(sum(groups.values()))
    else:
        total_f = float(total)
    want = {g: p[g] * total_f for g in groups}
    if total is not None and not upsample:
        # water-filling: groups too small for their share keep everything and the
        # rest of the budget is shared by the others in proportion to p_g
        fixed: dict[str, float] = {}
        while True:
            free = [g for g in groups if g not in fixed]
            budget = total_f - sum(fixed.values())
            zf = sum(p[g] for g in free) or 1.0
            over = [g for g in free if p[g] / zf * budget >= groups[g]]
            if not over:
                for g in free:
                    want[g] = p[g] / zf * budget
                break
            for g in over:
                fixed[g] = groups[g]
        want.update(fixed)
    out = {}
    for g, n in groups.items():
        t = want[g]
        if not upsample:
            t = min(t, n)
        cap = _lookup(caps, g)
        if cap is not None:
            t = min(t, cap)
        t = int(math.floor(t + 1e-9)) if t < n else int(round(t))
        fl = _lookup(floors, g)
        short = 0
        if fl is not None and t < fl:
            t = fl if (upsample or fl <= n) else n
            short = max(0, fl - t)
        out[g] = {"n": n, "target": t, "keep": min(1.0, t / n), "repeat": max(0, t - n), "short": short}
    return out


def _order(seed: int, prefer: str | None):
    """Rows in the order they are kept: best ``meta[prefer]`` first (``-name``: lowest first;
    rows without the score last), ties and the rest by hash of (seed, id)."""
    if not prefer:
        return lambda r: unit_hash(seed, "balance", r["id"])
    key, sign = (prefer[1:], 1.0) if prefer.startswith("-") else (prefer, -1.0)

    def order(r):
        v = r["meta"].get(key)
        return (v is None, sign * v if v is not None else 0.0, unit_hash(seed, "balance", r["id"]))
    return order


def select(rows: list[dict], by: list[str], quotas: dict[str, dict], seed: int = 0,
           prefer: str | None = None) -> list[dict]:
    """Exactly `target` rows per group: the best-scored (``prefer``) or lowest hashes, plus
    repeats when upsampling."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(group_of(r, by), []).append(r)
    out = []
    for g, rs in groups.items():
        q = quotas.get(g)
        if q is None:
            out.extend(rs)
            continue
        rs = sorted(rs, key=_order(seed, prefer))
        keep = rs[:min(q["target"], len(rs))]
        out.extend(keep)
        for k in range(q["repeat"]):
            out.append(repeat_copy(rs[k % len(rs)], k // len(rs) + 1))
    return out


def repeat_copy(row: dict, j: int) -> dict:
    """The j-th extra copy of a row (j >= 1): id ``<id>-r<j>``, marked with its parent."""
    return {**row, "id": f"{row['id']}-r{j}", "meta": dict(row["meta"], repeat_of=row["id"], origin="upsample")}


def distribution(rows: list[dict], fields: list[str]) -> dict[str, dict[str, int]]:
    out = {}
    for f in fields:
        c: Counter = Counter()
        for r in rows:
            v = r.get(f) if f in ("lang", "source") and r.get(f) is not None else r["meta"].get(f)
            c[str(v or "unknown")] += 1
        out[f] = dict(sorted(c.items()))
    return out


def balance(rows: list[dict], by: Sequence[str] = ("category",), temperature: float = 1.0, caps: dict | None = None,
            floors: dict | None = None, total: int | None = None, upsample: bool = False, seed: int = 0,
            report_fields: tuple[str, ...] = ("category", "task", "lang", "source"),
            prefer: str | None = None) -> tuple[list[dict], dict]:
    """``prefer``: a score in meta (``judge_score``; ``-ifd`` for lowest first) deciding which
    rows of a downsampled group are kept."""
    by = list(by)
    counts = Counter(group_of(r, by) for r in rows)
    q = plan(dict(counts), temperature, caps, floors, total, upsample)
    out = select(rows, by, q, seed, prefer)
    report = {"by": by, "temperature": temperature, "plan": q,
              "before": distribution(rows, list(report_fields)), "after": distribution(out, list(report_fields))}
    return out, report
