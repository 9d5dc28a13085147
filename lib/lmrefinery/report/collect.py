"""What the report shows, gathered from a run's output folder into typed
records: the funnel, example rejects, quality-signal histograms with their
thresholds, language x source mixes, token mix, dedup cluster sizes."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .rundata import RunData, StageInfo

EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 500
HIST_BINS = 40
MAX_SIGNAL_ROWS = 200_000  # per stage; more rows are sampled with a fixed stride


@dataclass
class FunnelRow:
    stage: str
    docs_kept: int
    chars_kept: int | None


@dataclass
class Example:
    stage_dir: str
    reason: str
    id: str
    source: str
    text: str      # whole text (the page shows the first EXAMPLE_CHARS characters)
    n_chars: int
    file: str      # relative to the run root


@dataclass
class SignalHist:
    column: str
    edges: list[float]
    kept: list[int]
    rejected: list[int]
    thresholds: list[tuple[str, float]]  # (languages, value)
    n_nan: int = 0


@dataclass
class Mix:
    """Documents per (source, language) at one point of the run."""
    label: str
    counts: dict[tuple[str, str], int] = field(default_factory=dict)


def funnel(run: RunData) -> list[FunnelRow]:
    rows = []
    for s in run.stages:
        chars = s.manifest.get("chars", {}).get("kept")
        if chars is None:  # runs written before the manifest counted characters
            chars = sum(int(pc.sum(pc.utf8_length(t.column("text").fill_null(""))).as_py() or 0)
                        for _, t in s.data_tables(["text"]))
        rows.append(FunnelRow(s.name, int(s.manifest["counts"]["kept"]), chars))
    return rows


def redact_examples(run: RunData, stage: StageInfo, found: list[Example]) -> list[Example]:
    """Example documents of stages before the run's `pii` stage hold raw text (so do their
    rejects); the report is meant to be shared, so they are shown with the run's own pii
    settings applied. Stages from `pii` on, and runs without it, are shown as stored."""
    pii = run.stage("pii")
    if pii is None or stage.index >= pii.index:
        return found
    from ..pii.stage import PiiParams, Redactor

    red = Redactor(PiiParams(**pii.manifest.get("params", {})))
    for ex in found:  # whole texts, so nothing is cut in half at the display limit first
        ex.text = red.redact(ex.text, {})
    return found


def examples(stage: StageInfo) -> list[Example]:
    """Up to EXAMPLES_PER_REASON rejected documents per reason of one stage."""
    want = {r: EXAMPLES_PER_REASON for r in stage.rejected}
    out: list[Example] = []
    for rel, t in stage.reject_tables(["id", "text", "source", "reject_reason"]):
        for row in t.to_pylist():
            reason = row.get("reject_reason") or ""
            if want.get(reason, 0) <= 0:
                continue
            want[reason] -= 1
            text = row.get("text") or ""
            out.append(Example(stage.dirname, reason, row.get("id") or "", row.get("source") or "",
                               text, len(text), f"stages/{stage.dirname}/{rel}"))
        if not any(v > 0 for v in want.values()):
            break
    return out


def _columns_of(stage: StageInfo, prefix: str) -> list[str]:
    return sorted(c for c in stage.columns() if c.startswith(prefix) and c != "q_reasons")


def _read_cols(stage: StageInfo, cols: list[str], rejects: bool) -> pa.Table | None:
    """The columns of a stage's kept (or rejected) rows, every k-th row of each part so that
    at most about MAX_SIGNAL_ROWS are read into memory whatever the size of the run."""
    entries = stage.manifest.get("rejects" if rejects else "outputs", [])
    total = sum(int(e.get("rows", 0)) for e in entries)
    step = max(1, math.ceil(total / MAX_SIGNAL_ROWS))
    tables = []
    for _, t in (stage.reject_tables(cols) if rejects else stage.data_tables(cols)):
        tables.append(t.take(pa.array(range(0, t.num_rows, step))) if step > 1 else t)
    return pa.concat_tables(tables, promote_options="default") if tables else None


def _values(t: pa.Table | None, col: str) -> np.ndarray:
    if t is None or col not in t.column_names:
        return np.array([], dtype=float)
    return np.asarray(t.column(col).to_numpy(zero_copy_only=False), dtype=float)


def signal_hists(stage: StageInfo, thresholds: dict[str, list[tuple[str, float]]]) -> list[SignalHist]:
    """Histograms of every q_* signal of a quality stage: kept and rejected rows stacked."""
    cols = _columns_of(stage, "q_")
    if not cols:
        return []
    kept_t, rej_t = _read_cols(stage, cols, False), _read_cols(stage, cols, True)
    out = []
    for c in cols:
        kept, rej = _values(kept_t, c), _values(rej_t, c)
        both = np.concatenate([kept, rej])
        finite = both[np.isfinite(both)]
        if finite.size == 0:
            continue
        lo, hi = float(finite.min()), float(finite.max())
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        hk, _ = np.histogram(kept[np.isfinite(kept)], edges)
        hr, _ = np.histogram(rej[np.isfinite(rej)], edges)
        out.append(SignalHist(c, [float(e) for e in edges], hk.tolist(), hr.tolist(),
                              thresholds.get(c, []), int(both.size - finite.size)))
    return out


def quality_thresholds(stage: StageInfo, langs: list[str]) -> dict[str, list[tuple[str, float]]]:
    """Signal column -> [(languages, threshold)] for the languages seen, as the stage used them."""
    from ..quality.rules import CHECKS, load_lang_confs, signal_column

    p = stage.manifest.get("params", {})
    try:
        confs = load_lang_confs(p.get("conf_dir"), p.get("thresholds"), p.get("languages"))
    except (OSError, ValueError):
        return {}
    by_col: dict[str, dict[float, list[str]]] = {}
    for lang in sorted(set(langs) or {"en"}):
        conf = confs.get(lang) or confs.get(p.get("default_lang", "en")) or confs["default"]
        for rule, checks in CHECKS.items():
            for _check, sig, _op, key in checks:
                thr = 0.0 if key == "_flag" else 1.0 if key == "_one" else conf.rules.get(rule, {}).get(key)
                if isinstance(thr, (int, float)) and not isinstance(thr, bool):
                    by_col.setdefault(signal_column(rule, sig), {}).setdefault(float(thr), []).append(lang)
    return {c: [(",".join(ls), v) for v, ls in d.items()] for c, d in by_col.items()}


def langs_of(stage: StageInfo) -> list[str]:
    seen: set[str] = set()
    for _, t in stage.data_tables(["lang"]):
        seen.update(x for x in pc.unique(t.column("lang")).to_pylist() if x)
    return sorted(seen)


def _count_pairs(t: pa.Table) -> Counter:
    g = t.group_by(["source", "lang"]).aggregate([([], "count_all")])
    return Counter({(s or "?", lang or "unknown"): n for s, lang, n in
                    zip(g.column("source").to_pylist(), g.column("lang").to_pylist(),
                        g.column("count_all").to_pylist())})


def mix(stage: StageInfo, label: str, with_rejects: bool) -> Mix:
    c: Counter = Counter()
    for _, t in stage.data_tables(["source", "lang"]):
        c.update(_count_pairs(t))
    if with_rejects:
        for _, t in stage.reject_tables(["source", "lang"]):
            c.update(_count_pairs(t))
    return Mix(label, dict(c))


def exact_cluster_sizes(stage: StageInfo) -> dict[int, int]:
    """Cluster size -> clusters, from exact_dedup's rejects (each names the copy it kept)."""
    if "duplicate_of" not in stage.columns(rejects=True):
        return {}
    keepers: Counter = Counter()
    for _, t in stage.reject_tables(["duplicate_of"]):
        keepers.update(x for x in t.column("duplicate_of").to_pylist() if x)
    return dict(sorted(Counter(n + 1 for n in keepers.values()).items()))
