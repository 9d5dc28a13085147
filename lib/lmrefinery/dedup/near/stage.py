"""The `dedup` stage: its rounds in order (see the package docstring for what each does)."""
from __future__ import annotations

import time
from typing import Any

from ...core import storage
from ...core.stage import register
from ..drops import DedupStage, part_outs
from .apply import ApplyTask, drop_rows
from .band import BandResult, BandTask, band_bucket
from .choose import ChooseResult, ChooseTask, choose_keepers
from .components import cc_files
from .components_spark import cc_spark
from .files import IndexRef, index_refs, with_buckets, write_index_meta
from .label import LabelTask, label_members
from .params import NearParams
from .report import NearReport, Rounds
from .sign import SignResult, SignTask, sign_part
from .verify import verify_candidates


@register
class NearDedup(DedupStage):
    name = "dedup"
    Params = NearParams
    params: NearParams
    description = ("Near-duplicate removal: MinHash LSH over word and CJK character n-grams, optional exact-"
                   "Jaccard verification, distributed connected components, one deterministic keeper per cluster.")

    def execute(self, job: Any) -> list[dict[str, Any]]:
        t_start = time.time()
        report = NearReport()
        work = job.work_dir
        p, report.buckets_from = with_buckets(job, self.params)  # the count every round runs with
        index = storage.join(job.stage_dir, "index")
        storage.delete_prefix(index)
        indexes = index_refs(index, len(job.inputs), p)  # this run's, then earlier releases'
        rounds = Rounds(job)
        _sign(rounds, report, job, index, p)
        _band(rounds, report, indexes, work, p)
        if p.verify and report.candidate_pairs:
            report.candidate_pairs, report.verified_pairs = verify_candidates(rounds, indexes, work, p)
            rounds.lap("verify")
        if report.edges:
            labels = _components(rounds, report, job, p)
            rounds.map(label_members, [LabelTask(k, labels, indexes, work, p.n_buckets) for k in range(p.n_buckets)],
                       "label")
            rounds.lap("label")
        _choose(rounds, report, job, p)
        parts = rounds.map(drop_rows, [ApplyTask(out, work, report.drops[out.part],
                                                 report.counters() if out.part == 0 else None)
                                       for out in part_outs(job, self.name)], "apply")
        rounds.lap("apply")
        report.write(job.stage_dir, p, [ix.root for ix in indexes[1:]], rounds, t_start)
        storage.delete_prefix(work)
        return parts


def _sign(rounds: Rounds, report: NearReport, job: Any, index: str, p: NearParams) -> None:
    signed: list[SignResult] = rounds.map(sign_part, [SignTask(i, path, index, p) for i, path in enumerate(job.inputs)],
                                          "sign")
    write_index_meta(index, p, job.inputs, job.ctx["output_root"])
    report.documents = sum(x.rows for x in signed)
    report.no_shingles = sum(x.empty for x in signed)
    rounds.lap("sign")


def _band(rounds: Rounds, report: NearReport, indexes: list[IndexRef], work: str, p: NearParams) -> None:
    banded: list[BandResult] = rounds.map(band_bucket, [BandTask(b, indexes, work, p) for b in range(p.n_buckets)],
                                          "band")
    report.candidate_pairs = sum(x.edges for x in banded)
    rounds.lap("band")


def _components(rounds: Rounds, report: NearReport, job: Any, p: NearParams) -> str:
    """Connected components of the candidate graph: the folder of the node labels."""
    if getattr(job.engine, "name", "") == "spark":
        labels, report.cc_rounds = cc_spark(job.work_dir, p.n_buckets, p.max_cc_rounds)
        report.cc_impl = "spark-dataframe"
    else:
        labels, report.cc_rounds = cc_files(rounds, job.work_dir, p.n_buckets, p.max_cc_rounds)
        report.cc_impl = "file-rounds"
    rounds.lap("cc")
    return labels


def _choose(rounds: Rounds, report: NearReport, job: Any, p: NearParams) -> None:
    clusters = storage.join(job.stage_dir, "clusters")
    chosen: list[ChooseResult] = rounds.map(
        choose_keepers, [ChooseTask(c, job.work_dir, clusters, p.keep) for c in range(p.n_buckets)], "choose")
    for x in chosen:
        report.hist.update(x.hist)
        report.removed.update(x.removed)
        report.drops.update(x.drops)
    rounds.lap("choose")
