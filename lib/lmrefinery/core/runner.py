"""Runs a recipe: plans stages, skips committed work, executes the rest on an
engine, checks the accounting, commits manifests and writes stats.json.

The worker side (one stage on one part, markers, fusion of map stages) is
core/parts.py; manifests and stats rows are core/commit.py; a stage folder's
clean-up between attempts is core/stagedir.py. Features outside core/ (the input
ledger, the HTML report) take part through core/hooks.py: lmrefinery/run.py's
``run_recipe`` wires them, so a plain ``Runner(recipe).run()`` writes neither."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from ..engines import get_engine
from . import manifest as mf
from . import storage
from .commit import RunInfo, StageRun, manifest_of, stat_row
from .history import with_history
from .hooks import FinishedRun, RunHooks
from .job import GlobalJob
from .lock import RunLock
from .parts import AccountingError, ChainTask, PartTask, _h, finish_part, part_name, run_chain, run_part
from .preflight import Preflight
from .progress import RunProgress, StageProgress
from .recipe import Recipe, StageSpec
from .stage import Stage, StageContext, get_stage
from .stagedir import prepare_stage_dir, work_dir
from .summary import format_summary

# format_summary, finish_part, prepare_stage_dir and work_dir: older import paths kept
__all__ = ["Runner", "AccountingError", "GlobalJob", "finish_part", "format_summary", "prepare_stage_dir",
           "run_part", "work_dir"]

Row = dict[str, Any]


@dataclass
class _Step:
    """One stage of this run, planned: what it runs with and what its fingerprint is."""
    k: int
    spec: StageSpec
    cls: type[Stage]
    params: dict[str, Any]
    sdir: str
    ctx: dict[str, Any]
    fp: str
    inputs_desc: list[Row]
    files: list[Row] | None = None   # read stage: the input objects (or byte ranges)

    def stage_run(self) -> StageRun:
        return StageRun(self.k, self.spec.stage, self.fp, self.params, self.inputs_desc, self.spec.sources)


class Runner:
    def __init__(self, recipe: Recipe, engine: str | None = None, only: list[str] | None = None,
                 workers: int | None = None, quiet: bool = False, break_lock: bool = False,
                 force: list[str] | None = None, hooks: RunHooks | None = None):
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
        self.stats: list[Row] = []
        self.hooks = hooks or RunHooks()
        self.read_files: list[Row] = []   # what the read stage read (the ledger records it)
        self.break_lock = break_lock
        self.lock: RunLock | None = None

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def stage_dir(self, k: int, name: str) -> str:
        return storage.join(self.out, "stages", f"{k:02d}-{name}")

    def input_files(self) -> list[Row]:
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

    def run(self) -> Row:
        """The whole run holds the output root's lock (core/lock.py): a second run on the
        same output stops with RunLocked naming the holder instead of corrupting it."""
        with RunLock(self.out, self.recipe.name, break_lock=self.break_lock) as lock:
            self.lock = lock
            try:
                return self._run_locked()
            finally:
                self.lock = None

    def _run_locked(self) -> Row:
        t_run = time.time()
        # the chain starts from what is read and the seed; each stage then adds its own
        # name, params and code, so a change re-runs that stage and those after it only
        prev_fp = _h([[i.model_dump() for i in self.recipe.inputs], self.recipe.seed])
        prev_outputs: list[str] = []
        prev_sizes: list[int] = []
        prev_rows: list[int] | None = []
        did_work = forcing = False
        k = 0
        while k < len(self.recipe.stages):
            step = self._plan(k, prev_fp, prev_outputs)
            if step is None:
                return self._nothing_new(t_run)
            forcing = forcing or step.spec.stage in self.force
            if forcing:
                storage.delete_prefix(step.sdir)  # parts would otherwise be reused by fingerprint
            done = None if forcing else mf.committed(step.sdir, step.fp)
            if done or not (forcing or self._selected(step)):
                prev_outputs, prev_sizes, prev_rows = _outputs(step.sdir, self._skip(step, done))
                prev_fp, k = step.fp, k + 1
                continue
            did_work = True
            chain = [step]
            if step.cls.kind in ("map", "read") and self.recipe.resources.fuse:
                more, forcing = self._fusable(step, forcing)
                chain += more
            for st in chain:
                prepare_stage_dir(st.sdir, st.fp)  # nothing of another recipe/input/code survives
            t0 = time.time() + self._start_engine()  # a stage's seconds exclude the engine's start-up
            if step.cls.kind in ("map", "read"):
                last = self._run_parts(chain, prev_outputs, prev_sizes, t0)
            else:
                last = self._run_global(step, prev_outputs, prev_rows, t0)
            prev_outputs, prev_sizes, prev_rows = _outputs(chain[-1].sdir, last)
            prev_fp = chain[-1].fp
            k += len(chain)
        return self._finish(t_run, did_work, prev_outputs)

    def _selected(self, step: _Step) -> bool:
        return self.only is None or step.spec.stage in self.only

    def _skip(self, step: _Step, done: Row | None) -> Row:
        """A stage committed with this fingerprint (or one left out with --stages, which
        must be): its manifest stands for it and is returned."""
        if not done:
            raise RuntimeError(f"stage {step.spec.stage} is not selected with --stages but has no committed "
                               f"output matching the recipe; run it too")
        hint = f"; --force {step.spec.stage} re-runs it" if self.only and step.spec.stage in self.only else ""
        self.log(f"[{step.k:02d} {step.spec.stage}] up to date (manifest {done['fingerprint']}), skipped{hint}")
        self.stats.append(stat_row(done, skipped=True))
        return done

    def _finish(self, t_run: float, did_work: bool, final_outputs: list[str]) -> Row:
        """Every stage is committed: labels, token funnel and the before-store hooks add to
        the stats, stats.json is written (with the history of earlier runs), then the
        after-store hooks run."""
        stats: Row = {"run": self.recipe.name, "recipe_fingerprint": self.recipe.fingerprint(),
                      "engine": self.recipe.engine, "workers": self.recipe.resources.workers,
                      "output": self.out, "did_work": did_work, "wall_seconds": round(time.time() - t_run, 2),
                      "engine_startup_seconds": self.engine_startup_seconds,
                      "stages": self.stats, "final_outputs": [storage.relpath(p, self.out) for p in final_outputs]}
        if self.engine.nodes_used():
            stats["nodes"] = self.engine.nodes_used()
        if self.recipe.labels:
            from .labels import evaluate_labels

            stats["planted"] = evaluate_labels(self.recipe.labels, self.out, self.stats)
        if self.recipe.token_funnel:
            from .token_funnel import add_token_funnel

            add_token_funnel(self.out, self.stats, lambda fn, tasks: self.engine.map(fn, tasks))
        finished = FinishedRun(self.recipe.name, self.out, stats, self.read_files)
        for hook in self.hooks.before_store:
            hook(finished)
        finished.stored = self._store(stats)
        for hook in self.hooks.after_store:
            hook(finished)
        return stats

    def _store(self, stats: Row) -> Row:
        """Write stats.json: this run's stats with the history of the runs before."""
        stored = with_history(mf.read_json(storage.join(self.out, "stats.json")), stats)
        mf.write_json(storage.join(self.out, "stats.json"), stored)
        return stored

    def _plan(self, k: int, prev_fp: str, prev_outputs: list[str]) -> _Step | None:
        """Stage k's parameters, folder, inputs and fingerprint (None: no input to read,
        the input selection hook found nothing new)."""
        spec = self.recipe.stages[k]
        cls = get_stage(spec.stage)
        params = cls.Params(**spec.params).model_dump(mode="json")
        sdir = self.stage_dir(k, spec.stage)
        ctx = dict(output_root=self.out, seed=self.recipe.seed, inputs=[i.model_dump() for i in self.recipe.inputs],
                   run_name=self.recipe.name, stage_dir=sdir)
        if cls.kind != "read":
            fp = _h([prev_fp, spec.stage, params, cls.code_hash()]
                    + ([sorted(spec.sources)] if spec.sources is not None else []))
            return _Step(k, spec, cls, params, sdir, ctx, fp,
                         [{"path": storage.relpath(p, self.out)} for p in prev_outputs])
        files = self.input_files()
        if self.hooks.select_inputs is not None:
            files = self.hooks.select_inputs(files)
            if not files:
                self.log(f"[{k:02d} {spec.stage}] --new-only: no input object is new since the last run")
                return None
        self.read_files = files
        files = cls.plan_tasks(files)  # e.g. byte ranges of large splittable objects
        desc = [{"path": f"{f['input']}:{f['rel']}" + (f"@{f['range'][0]}-{f['range'][1]}" if f.get("range") else ""),
                 "size": f["size"], "etag": f["etag"]} for f in files]
        fp = _h([prev_fp, spec.stage, params, cls.code_hash(), [(d["path"], d["size"], d["etag"]) for d in desc]])
        return _Step(k, spec, cls, params, sdir, ctx, fp, desc, files)

    def _fusable(self, first: _Step, forcing: bool) -> tuple[list[_Step], bool]:
        """The map stages right after `first` that also have to run: they run fused with it."""
        chain: list[_Step] = []
        prev = first
        for k in range(first.k + 1, len(self.recipe.stages)):
            if get_stage(self.recipe.stages[k].stage).kind != "map":
                break
            outputs = [storage.join(prev.sdir, "data", part_name(i)) for i in range(len(prev.inputs_desc))]
            step = self._plan(k, prev.fp, outputs)
            assert step is not None
            forcing_here = forcing or step.spec.stage in self.force
            selected = forcing_here or self._selected(step)
            if not selected or (not forcing_here and mf.committed(step.sdir, step.fp)):
                break
            if forcing_here:
                storage.delete_prefix(step.sdir)
            forcing = forcing_here
            chain.append(step)
            prev = step
        return chain, forcing

    def _part_tasks(self, chain: list[_Step], inputs: list[tuple[Any, str]]) -> list[list[PartTask]]:
        """[stage][part]: the worker tasks of each stage of a (fused) chain, one per part;
        a stage after the first reads the parts of the stage before."""
        tasks: list[list[PartTask]] = []
        for j, st in enumerate(chain):
            if j:
                before = chain[j - 1].sdir
                inputs = [(p, storage.relpath(p, self.out))
                          for p in (storage.join(before, "data", part_name(i)) for i in range(len(inputs)))]
            tasks.append([PartTask(st.spec.stage, st.params, st.ctx, st.sdir, i, st.fp, input=src, input_desc=desc,
                                   sources=st.spec.sources, batch_size=self.recipe.resources.batch_size)
                          for i, (src, desc) in enumerate(inputs)])
        return tasks

    def _run_parts(self, chain: list[_Step], prev_outputs: list[str], prev_sizes: list[int],
                   t0: float) -> Row:
        """Map/read stages, one task per part; several stages in a row run fused (core/parts.py).
        Returns the manifest of the last stage of the chain."""
        first = chain[0]
        inputs: list[tuple[Any, str]]
        if first.files is not None:
            inputs = [(f, d["path"]) for f, d in zip(first.files, first.inputs_desc)]
            sizes = [f["size"] for f in first.files]
        else:
            inputs = [(p, storage.relpath(p, self.out)) for p in prev_outputs]
            sizes = prev_sizes
        tasks = self._part_tasks(chain, inputs)
        bars = [self.progress.stage(st.k, st.spec.stage, len(inputs), sizes if j == 0 else None)
                for j, st in enumerate(chain)]
        workers = f"{self.engine.name} ({self.recipe.resources.workers} workers)"
        if len(chain) == 1:
            self.log(f"[{first.k:02d} {first.spec.stage}] running on {workers}")
            per_stage = [self.engine.map(run_part, tasks[0], on_result=bars[0].on_part)]
        else:
            names = ", ".join(f"{st.k:02d} {st.spec.stage}" for st in chain)
            self.log(f"[{first.k:02d} {first.spec.stage}] running on {workers}, fused: {names}")

            def on_result(i: int, markers: list[Row]) -> None:
                for bar, m in zip(bars, markers):
                    bar.on_part(i, m)

            results = self.engine.map(run_chain, [ChainTask([t[i] for t in tasks]) for i in range(len(inputs))],
                                      on_result=on_result)
            per_stage = [[r[j] for r in results] for j in range(len(chain))]
        return self._commit_chain(chain, per_stage, bars, time.time() - t0)

    def _commit_chain(self, chain: list[_Step], per_stage: list[list[Row]], bars: list[StageProgress],
                      wall: float) -> Row:
        """Commit each stage of a chain; fused stages share the wall time in proportion to
        the work their parts measured."""
        work = [sum(float(m.get("seconds", 0.0)) for m in parts) for parts in per_stage]
        total = sum(work)
        m: Row = {}
        for st, parts, w, bar in zip(chain, per_stage, work, bars):
            m = self._commit(st, parts, wall * (w / total if total else 1 / len(chain)))
            bar.close(m["counts"]["in"], m["seconds"])
            row = stat_row(m, skipped=False)
            if len(chain) > 1:
                row["fused_with"] = [c.spec.stage for c in chain if c is not st]
            self.stats.append(row)
        return m

    def _run_global(self, step: _Step, prev_outputs: list[str], prev_rows: list[int] | None, t0: float) -> Row:
        self.log(f"[{step.k:02d} {step.spec.stage}] running on {self.engine.name} "
                 f"({self.recipe.resources.workers} workers)")
        bar = self.progress.stage(step.k, step.spec.stage, len(prev_outputs))
        job = GlobalJob(self.engine, bar, step.spec.stage, step.sdir, prev_outputs, step.fp, step.ctx, step.params,
                        self.recipe.resources.batch_size, input_rows=prev_rows)
        parts = step.cls(step.cls.Params(**step.params), StageContext(**step.ctx)).execute(job)
        m = self._commit(step, parts, time.time() - t0, {k: v for k, (v, _) in job.resolved.items()},
                         {k: why for k, (_, why) in job.resolved.items()})
        bar.close(m["counts"]["in"], m["seconds"])
        self.stats.append(stat_row(m, skipped=False))
        return m

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

    def _nothing_new(self, t_run: float) -> Row:
        stats: Row = {"run": self.recipe.name, "recipe_fingerprint": self.recipe.fingerprint(),
                      "engine": self.recipe.engine, "workers": self.recipe.resources.workers, "output": self.out,
                      "did_work": False, "nothing_new": True, "wall_seconds": round(time.time() - t_run, 2),
                      "stages": [], "final_outputs": []}
        self._store(stats)
        return stats

    def _commit(self, st: _Step, parts: list[Row], seconds: float, resolved: Row | None = None,
                why: dict[str, str] | None = None) -> Row:
        """Write the stage's manifest (the commit point), its accounting checked. `resolved`:
        parameters a global stage chose when it ran (its manifest's params hold the value
        it ran with, and `resolved` says why); the fingerprint stays the recipe's."""
        if self.lock is not None:
            self.lock.check()  # never commit over a run that took the output root over
        run = RunInfo(self.recipe.fingerprint(), self.recipe.engine, self.recipe.resources.workers)
        chars_in = self.stats[-1]["chars"].get("kept") if self.stats else None
        if resolved:
            st = replace(st, params={**st.params, **resolved})
        m = manifest_of(st.stage_run(), parts, seconds, run, chars_in=chars_in)
        if why:
            m["resolved"] = why
        mf.write_json(storage.join(st.sdir, mf.MANIFEST), m)  # commit point
        return m


def _outputs(sdir: str, manifest: Row) -> tuple[list[str], list[int], list[int] | None]:
    """The output parts of a committed stage, their sizes and rows (None when the manifest
    lacks them): the next stage's input."""
    outputs = manifest.get("outputs", [])
    rows = [o.get("rows") for o in outputs]
    return ([storage.join(sdir, o["path"]) for o in outputs], [int(o.get("bytes", 0)) for o in outputs],
            None if any(r is None for r in rows) else [int(r) for r in rows])
