"""Runs a recipe: plans stages, skips committed work, executes the rest on an
engine, checks the accounting, commits manifests, writes stats and the report."""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import manifest as mf
from . import storage
from .progress import RunProgress, StageProgress
from .recipe import Recipe
from .schema import concat, conform
from .stage import BatchResult, Stage, StageContext, get_stage


class AccountingError(RuntimeError):
    pass


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def length_hist(table: pa.Table) -> dict[str, int]:
    """Counts of text lengths in log2 buckets ("2^k" = [2^k, 2^(k+1)))."""
    if table.num_rows == 0 or "text" not in table.column_names:
        return {}
    lens = pc.utf8_length(table.column("text").fill_null("")).to_numpy(zero_copy_only=False)
    out: Counter = Counter()
    for n in lens:
        out[str(int(math.log2(n)) if n > 0 else -1)] += 1
    return dict(out)


def text_chars(table: pa.Table) -> int:
    """Unicode characters of text in a table (for the report's character funnel)."""
    if table.num_rows == 0 or "text" not in table.column_names:
        return 0
    return int(pc.sum(pc.utf8_length(table.column("text").fill_null(""))).as_py() or 0)


# ---------------------------------------------------------------- worker side
_STAGES: dict[str, Stage] = {}


def stage_instance(name: str, params: dict, ctx: dict) -> Stage:
    key = _h([name, params, ctx])
    if key not in _STAGES:
        cls = get_stage(name)
        st = cls(cls.Params(**params), StageContext(**ctx))
        st.setup()
        _STAGES[key] = st
    return _STAGES[key]


def write_part(stage_dir: str, i: int, kept: pa.Table, rejected: pa.Table | None) -> tuple[dict, dict]:
    kept = conform(kept)
    out = storage.write_parquet(kept, storage.join(stage_dir, "data", part_name(i)))
    out["path"] = f"data/{part_name(i)}"
    rej = conform(rejected) if rejected is not None and rejected.num_rows else None
    if rej is None:
        from .schema import with_reason

        rej = with_reason(conform(kept.slice(0, 0)), "", [])
    ro = storage.write_parquet(rej, storage.join(stage_dir, "rejects", part_name(i)))
    ro["path"] = f"rejects/{part_name(i)}"
    return out, ro


def finish_part(task: dict, results: list[BatchResult], n_in: int | None, t0: float,
                extra: dict | None = None) -> dict:
    """Write a part's kept rows and rejects, check its accounting, commit its marker."""
    stage_dir, i = task["stage_dir"], task["part"]
    kept = concat([r.kept for r in results])
    rejected = concat([r.rejected for r in results if r.rejected is not None])
    reasons = Counter()
    if rejected.num_rows:
        reasons.update(rejected.column("reject_reason").to_pylist())
    counters: Counter = Counter()
    for r in results:
        counters.update(r.counters)
    if n_in is None:
        n_in = kept.num_rows + rejected.num_rows
    if n_in != kept.num_rows + rejected.num_rows:
        raise AccountingError(f"stage {task['stage']} part {i}: in={n_in} but kept={kept.num_rows} + "
                              f"rejected={rejected.num_rows}")
    out, ro = write_part(stage_dir, i, kept, rejected)
    marker = {"part": i, "fingerprint": task["fingerprint"], "in": n_in, "kept": kept.num_rows,
              "rejected": dict(reasons), "counters": dict(counters), "output": out, "rejects": ro,
              "length_hist": length_hist(kept), "chars": {"kept": text_chars(kept), "rejected": text_chars(rejected)},
              "seconds": round(time.time() - t0, 3),
              "input": task.get("input_desc")}
    if extra:
        marker.update(extra)
    mf.write_json(storage.join(stage_dir, "_parts", f"part-{i:05d}.json"), marker)
    return marker


def reuse_part(task: dict) -> dict | None:
    m = mf.read_json(storage.join(task["stage_dir"], "_parts", f"part-{task['part']:05d}.json"))
    if m and m.get("fingerprint") == task["fingerprint"]:
        if storage.exists(storage.join(task["stage_dir"], m["output"]["path"])):
            m["skipped"] = True
            return m
    return None


def run_part(task: dict) -> dict:
    """The one worker entry point for map and read stages (runs on Ray or Spark)."""
    done = reuse_part(task)
    if done:
        return done
    t0 = time.time()
    st = stage_instance(task["stage"], task["params"], task["ctx"])
    if st.kind == "read":
        results = list(st.read(task["input"]))
        return finish_part(task, results, None, t0)
    results, n_in = [], 0
    for batch in storage.iter_parquet_batches(task["input"], batch_size=task.get("batch_size", 2048)):
        tb = pa.Table.from_batches([batch])
        n_in += tb.num_rows
        results.append(st.process(tb))
    if n_in == 0:
        results.append(st.process(conform(storage.read_parquet(task["input"]).slice(0, 0))))
    return finish_part(task, results, n_in, t0)


# ---------------------------------------------------------------- driver side
ATTEMPT = "_attempt.json"


def work_dir(stage_dir: str, fingerprint: str) -> str:
    return storage.join(stage_dir, "_work", fingerprint)


def prepare_stage_dir(sdir: str, fp: str) -> None:
    """Make a stage folder safe to (re)start for fingerprint ``fp``: what an older
    recipe/input/code left there — a committed result, or the scratch, index and
    markers of a crashed attempt — is deleted; a crashed attempt of the same
    fingerprint is kept, so it resumes. Leftover ``.tmp-`` files go in every case."""
    old = mf.read_manifest(sdir)
    attempt = mf.read_json(storage.join(sdir, ATTEMPT))
    owner = (attempt or old or {}).get("fingerprint")
    if owner is None and storage.list_files(sdir.rstrip("/") + "/"):
        owner = "unknown"  # files of unknown provenance (an older release): not reusable
    if owner is not None and owner != fp:
        storage.delete_prefix(sdir)
    _clean_tmp(sdir)
    mf.write_json(storage.join(sdir, ATTEMPT), {"fingerprint": fp, "started": round(time.time(), 3)})


def _clean_tmp(sdir: str) -> None:
    if storage.is_s3(sdir) or not os.path.isdir(sdir):
        return
    for root, _, fs in os.walk(sdir):
        for f in fs:
            if storage.is_tmp_name(f):
                os.remove(os.path.join(root, f))


class GlobalJob:
    """What a global stage gets: the engine, its input parts, where to write."""

    def __init__(self, runner: Runner, stage_dir: str, inputs: list[str], fingerprint: str, ctx: dict,
                 params: dict, name: str, progress: StageProgress):
        self.runner, self.engine, self.progress = runner, runner.engine, progress
        self.stage_dir, self.inputs, self.fingerprint = stage_dir, inputs, fingerprint
        self.ctx, self.params, self.name = ctx, params, name
        self.batch_size = runner.recipe.resources.batch_size

    @property
    def work_dir(self) -> str:
        """Scratch of this attempt: under the fingerprint, so nothing written for another
        recipe, input or code version can be read by this one."""
        return work_dir(self.stage_dir, self.fingerprint)

    def map(self, fn, tasks, desc=""):
        on_result = self.progress.start_step(desc or "tasks", len(tasks))
        out = self.engine.map(fn, tasks, desc=desc, on_result=on_result)
        self.progress.finish_step()
        return out


class Runner:
    def __init__(self, recipe: Recipe, engine: str | None = None, only: list[str] | None = None,
                 workers: int | None = None, quiet: bool = False, new_only: bool = False,
                 ledger: str | None = None, break_lock: bool = False, force: list[str] | None = None):
        from ..engines import get_engine
        from .preflight import Preflight

        # typos, unknown formats, missing tokenizers, unwritable outputs: fail before any work
        Preflight(recipe, only=only, force=force).run()
        self.recipe = recipe
        if engine:
            recipe.engine = engine  # type: ignore[assignment]
        if workers:
            recipe.resources.workers = workers
        r = recipe.resources
        self.engine = get_engine(recipe.engine, workers=r.workers, ray_address=r.ray_address,
                                 spark_master=r.spark_master, cpus_per_task=r.cpus_per_task)
        self.only = set(only) if only else None
        self.force = set(force or [])  # re-run these committed stages and every stage after them
        self.quiet = quiet
        self.progress = RunProgress(quiet)
        self.engine_startup_seconds: float | None = None
        self.out = recipe.output.rstrip("/")
        self.stats: list[dict] = []
        # input ledger (ingest/ledger.py): every successful run records the objects it read;
        # new_only=True reads only objects not recorded yet (or changed since)
        self.new_only = new_only
        self.ledger_uri = ledger
        self.read_files: list[dict] = []
        self.break_lock = break_lock
        self.lock = None

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def stage_dir(self, k: int, name: str) -> str:
        return storage.join(self.out, "stages", f"{k:02d}-{name}")

    def input_files(self) -> list[dict]:
        files = []
        for spec in self.recipe.inputs:
            found = []
            for pattern in spec.paths:
                base = storage.glob_base(pattern)
                for p in storage.list_files(pattern):
                    found.append((p, base))
            if not found:
                raise FileNotFoundError(f"input '{spec.name}': no files match {spec.paths}")
            seen = set()
            for p, base in found:
                if p in seen:
                    continue
                seen.add(p)
                info = storage.stat(p)
                rel = storage.relpath(p, base) if base else os.path.basename(p)
                files.append({"input": spec.name, "path": p, "rel": rel, "size": info.size, "etag": info.etag,
                              "format": spec.format, "fields": spec.fields, "options": spec.options,
                              "licence": spec.licence})
        return files

    def run(self) -> dict:
        """The whole run holds the output root's lock (core/lock.py): a second run on the
        same output stops with RunLocked naming the holder instead of corrupting it."""
        from .lock import RunLock

        with RunLock(self.out, self.recipe.name, break_lock=self.break_lock) as lock:
            self.lock = lock
            try:
                return self._run_locked()
            finally:
                self.lock = None

    def _run_locked(self) -> dict:
        t_run = time.time()
        # the chain starts from what is read and the seed; each stage then adds its own
        # name, params and code, so a change re-runs that stage and those after it only
        prev_fp = _h([[i.model_dump() for i in self.recipe.inputs], self.recipe.seed])
        prev_outputs: list[str] = []
        prev_sizes: list[int] = []
        ctx_base = dict(output_root=self.out, seed=self.recipe.seed,
                        inputs=[i.model_dump() for i in self.recipe.inputs], run_name=self.recipe.name)
        did_work = forcing = False
        for k, spec in enumerate(self.recipe.stages):
            cls = get_stage(spec.stage)
            params = cls.Params(**spec.params).model_dump(mode="json")
            sdir = self.stage_dir(k, spec.stage)
            ctx = dict(ctx_base, stage_dir=sdir)
            t0 = time.time()
            if cls.kind == "read":
                files = self.input_files()
                if self.new_only:
                    files = self._ledger().new_files(files)
                    if not files:
                        self.log(f"[{k:02d} {spec.stage}] --new-only: no input object is new since the last run")
                        return self._nothing_new(t_run)
                self.read_files = files
                if hasattr(cls, "plan_tasks"):  # e.g. byte ranges of large splittable objects
                    files = cls.plan_tasks(files)
                inputs_desc = [{"path": f"{f['input']}:{f['rel']}" + (f"@{f['range'][0]}-{f['range'][1]}"
                                                                      if f.get("range") else ""),
                                "size": f["size"], "etag": f["etag"]} for f in files]
                fp = _h([prev_fp, spec.stage, params, cls.code_hash(),
                         [(d["path"], d["size"], d["etag"]) for d in inputs_desc]])
            else:
                files = None
                inputs_desc = [{"path": storage.relpath(p, self.out)} for p in prev_outputs]
                fp = _h([prev_fp, spec.stage, params, cls.code_hash()])
            forcing = forcing or spec.stage in self.force
            if forcing:
                storage.delete_prefix(sdir)  # parts would otherwise be reused by fingerprint
            done = None if forcing else mf.committed(sdir, fp)
            selected = forcing or self.only is None or spec.stage in self.only
            if done or not selected:
                if not done:
                    raise RuntimeError(f"stage {spec.stage} is not selected with --stages but has no committed "
                                       f"output matching the recipe; run it too")
                hint = f"; --force {spec.stage} re-runs it" if self.only and spec.stage in self.only else ""
                self.log(f"[{k:02d} {spec.stage}] up to date (manifest {done['fingerprint']}), skipped{hint}")
                prev_outputs = [storage.join(sdir, o["path"]) for o in done["outputs"]]
                prev_sizes = [int(o.get("bytes", 0)) for o in done["outputs"]]
                self.stats.append(self._stat_row(done, skipped=True))
                prev_fp = fp
                continue
            did_work = True
            prepare_stage_dir(sdir, fp)  # nothing of another recipe/input/code survives
            t0 += self._start_engine()  # a stage's seconds exclude the engine's start-up
            self.log(f"[{k:02d} {spec.stage}] running on {self.engine.name} ({self.recipe.resources.workers} workers)")
            if cls.kind in ("map", "read"):
                if cls.kind == "read":
                    tasks = [{"input": f, "input_desc": d["path"]} for f, d in zip(files, inputs_desc)]
                else:
                    tasks = [{"input": p, "input_desc": storage.relpath(p, self.out)} for p in prev_outputs]
                for i, t in enumerate(tasks):
                    t.update(stage=spec.stage, params=params, ctx=ctx, stage_dir=sdir, part=i, fingerprint=fp,
                             batch_size=self.recipe.resources.batch_size)
                sizes = [f["size"] for f in files] if files is not None else prev_sizes
                bar = self.progress.stage(k, spec.stage, len(tasks), sizes)
                parts = self.engine.map(run_part, tasks, desc=spec.stage, on_result=bar.on_part)
            else:
                bar = self.progress.stage(k, spec.stage, len(prev_outputs))
                job = GlobalJob(self, sdir, prev_outputs, fp, ctx, params, spec.stage, bar)
                st = cls(cls.Params(**params), StageContext(**ctx))
                parts = st.execute(job)
            m = self._commit(k, spec.stage, sdir, fp, params, inputs_desc, parts, time.time() - t0)
            bar.close(m["counts"]["in"], m["seconds"])
            prev_outputs = [storage.join(sdir, o["path"]) for o in m["outputs"]]
            prev_sizes = [int(o.get("bytes", 0)) for o in m["outputs"]]
            self.stats.append(self._stat_row(m, skipped=False))
            prev_fp = fp
        wall = time.time() - t_run
        stats = {"run": self.recipe.name, "recipe_fingerprint": self.recipe.fingerprint(),
                 "engine": self.recipe.engine, "workers": self.recipe.resources.workers,
                 "output": self.out, "did_work": did_work, "wall_seconds": round(wall, 2),
                 "engine_startup_seconds": self.engine_startup_seconds,
                 "stages": self.stats, "final_outputs": [storage.relpath(p, self.out) for p in prev_outputs]}
        if self.engine.nodes_used():
            stats["nodes"] = self.engine.nodes_used()
        if self.recipe.labels:
            from .labels import evaluate_labels

            stats["planted"] = evaluate_labels(self.recipe.labels, self.out, self.stats)
        if self.read_files:  # every stage committed: these inputs are done
            stats["new_inputs_recorded"] = self._ledger().record(self.read_files, self.recipe.name)
        from .history import with_history

        stored = with_history(mf.read_json(storage.join(self.out, "stats.json")), stats)
        mf.write_json(storage.join(self.out, "stats.json"), stored)
        if self.recipe.report:
            from ..report.html import write_report

            stats["report"] = write_report(self.out, stored)
        return stats

    def _start_engine(self) -> float:
        """Start Ray/Spark once, before the first stage that runs, timed on its own;
        returns the seconds spent now (0 once started)."""
        if self.engine_startup_seconds is not None:
            return 0.0
        t0 = time.time()
        self.engine.start()
        spent = time.time() - t0
        self.engine_startup_seconds = round(spent, 2)
        self.progress.engine_started(self.engine.name, self.engine_startup_seconds)
        return spent

    def _ledger(self):
        from ..ingest.ledger import Ledger, default_location

        if not hasattr(self, "_ledger_obj"):
            self._ledger_obj = Ledger(self.ledger_uri or default_location(self.out))
        return self._ledger_obj

    def _nothing_new(self, t_run: float) -> dict:
        stats = {"run": self.recipe.name, "recipe_fingerprint": self.recipe.fingerprint(),
                 "engine": self.recipe.engine, "workers": self.recipe.resources.workers, "output": self.out,
                 "did_work": False, "nothing_new": True, "wall_seconds": round(time.time() - t_run, 2),
                 "stages": [], "final_outputs": []}
        from .history import with_history

        stored = with_history(mf.read_json(storage.join(self.out, "stats.json")), stats)
        mf.write_json(storage.join(self.out, "stats.json"), stored)
        return stats

    def _commit(self, k, name, sdir, fp, params, inputs_desc, parts, seconds) -> dict:
        if self.lock is not None:
            self.lock.check()  # never commit over a run that took the output root over
        n_in = sum(p["in"] for p in parts)
        kept = sum(p["kept"] for p in parts)
        rej: Counter = Counter()
        counters: Counter = Counter()
        hist: Counter = Counter()
        chars: Counter = Counter()
        for p in parts:
            chars.update(p.get("chars", {}))
            rej.update(p["rejected"])
            counters.update(p.get("counters", {}))
            hist.update(p.get("length_hist", {}))
        if n_in != kept + sum(rej.values()):
            raise AccountingError(f"stage {name}: in={n_in} != kept={kept} + rejected={sum(rej.values())} "
                                  f"({dict(rej)}); refusing to commit")
        m = {"stage": name, "index": k, "fingerprint": fp, "recipe": self.recipe.fingerprint(),
             "code_version": mf.code_version(), "params": params, "inputs": inputs_desc,
             "outputs": [p["output"] for p in parts], "rejects": [p["rejects"] for p in parts],
             "counts": {"in": n_in, "kept": kept, "rejected": dict(sorted(rej.items()))},
             "counters": dict(sorted(counters.items())), "chars": dict(sorted(chars.items())),
             "length_hist": dict(sorted(hist.items(), key=lambda x: int(x[0]))),
             "seconds": round(seconds, 3), "engine": self.recipe.engine, "workers": self.recipe.resources.workers,
             "skipped_parts": sum(1 for p in parts if p.get("skipped")), "complete": True}
        for extra in ("artifacts",):
            vals = [p[extra] for p in parts if extra in p]
            if vals:
                m[extra] = vals
        mf.write_json(storage.join(sdir, mf.MANIFEST), m)  # commit point
        return m

    @staticmethod
    def _stat_row(m: dict, skipped: bool) -> dict:
        c = m["counts"]
        return {"stage": m["stage"], "index": m["index"], "in": c["in"], "kept": c["kept"],
                "rejected": c["rejected"], "counters": m.get("counters", {}),
                "seconds": 0.0 if skipped else m["seconds"], "committed_seconds": m["seconds"], "skipped": skipped,
                "length_hist": m.get("length_hist", {}), "fingerprint": m["fingerprint"]}


def format_summary(stats: dict) -> str:
    rows = [("stage", "in", "kept", "top rejection reasons", "seconds", "")]
    for s in stats["stages"]:
        top = sorted(s["rejected"].items(), key=lambda x: (-x[1], x[0]))[:3]
        reasons = ", ".join(f"{r}={n}" for r, n in top) or "-"
        secs = f"({s['committed_seconds']:.1f})" if s["skipped"] and "committed_seconds" in s else f"{s['seconds']:.1f}"
        rows.append((f"{s['index']:02d} {s['stage']}", str(s["in"]), str(s["kept"]), reasons,
                     secs, "skipped" if s["skipped"] else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if j in (0, 3, 5) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    out = "\n".join(lines)
    if any(s["skipped"] for s in stats["stages"]):
        out += "\n(seconds) of a skipped stage: as measured by the run that committed it"
    if stats.get("planted"):
        out += "\n\nPlanted labels (sample shards):\n"
        for kind, d in stats["planted"].items():
            where = ", ".join(f"{k}={v}" for k, v in sorted(d["removed_by"].items())) or "none"
            out += f"  {kind:<14} planted={d['planted']:<4} removed={d['removed']:<4} by: {where}\n"
    if not stats["did_work"]:
        out += "\nNothing to do: every stage was already committed with the same recipe, inputs and code.\n"
    return out
