"""Runs a recipe: plans stages, skips committed work, executes the rest on an
engine, checks the accounting, commits manifests, writes stats and the report.
The worker side (one stage on one part, markers, fusion of map stages) is core/parts.py."""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass

from . import manifest as mf
from . import storage
from .parts import AccountingError, _h, finish_part, part_name, run_chain, run_part
from .progress import RunProgress, StageProgress
from .recipe import Recipe, StageSpec
from .stage import Stage, StageContext, get_stage

__all__ = ["Runner", "AccountingError", "finish_part", "format_summary", "run_part"]


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


@dataclass
class _Step:
    """One stage of this run, planned: what it runs with and what its fingerprint is."""
    k: int
    spec: StageSpec
    cls: type[Stage]
    params: dict
    sdir: str
    ctx: dict
    fp: str
    inputs_desc: list[dict]
    files: list[dict] | None = None   # read stage: the input objects (or byte ranges)


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

    def map(self, fn, tasks, step: str = ""):
        """Run one round of this stage: ``fn`` over ``tasks`` on the engine; ``step``
        names the round in the progress display."""
        on_result = self.progress.start_step(step or "tasks", len(tasks))
        out = self.engine.map(fn, tasks, on_result=on_result)
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
            selected = forcing or self.only is None or step.spec.stage in self.only
            if done or not selected:
                if not done:
                    raise RuntimeError(f"stage {step.spec.stage} is not selected with --stages but has no committed "
                                       f"output matching the recipe; run it too")
                hint = f"; --force {step.spec.stage} re-runs it" if self.only and step.spec.stage in self.only else ""
                self.log(f"[{k:02d} {step.spec.stage}] up to date (manifest {done['fingerprint']}), skipped{hint}")
                prev_outputs = [storage.join(step.sdir, o["path"]) for o in done["outputs"]]
                prev_sizes = [int(o.get("bytes", 0)) for o in done["outputs"]]
                self.stats.append(self._stat_row(done, skipped=True))
                prev_fp = step.fp
                k += 1
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
                ms = self._run_parts(chain, prev_outputs, prev_sizes, t0)
            else:
                ms = [self._run_global(step, prev_outputs, t0)]
            last = ms[-1]
            prev_outputs = [storage.join(chain[-1].sdir, o["path"]) for o in last["outputs"]]
            prev_sizes = [int(o.get("bytes", 0)) for o in last["outputs"]]
            prev_fp = chain[-1].fp
            k += len(chain)
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
        if self.recipe.token_funnel:
            from ..report.token_funnel import add_token_funnel

            add_token_funnel(self.out, self.stats, lambda fn, tasks: self.engine.map(fn, tasks))
        if self.read_files:  # every stage committed: these inputs are done
            stats["new_inputs_recorded"] = self._ledger().record(self.read_files, self.recipe.name)
        from .history import with_history

        stored = with_history(mf.read_json(storage.join(self.out, "stats.json")), stats)
        mf.write_json(storage.join(self.out, "stats.json"), stored)
        if self.recipe.report:
            from ..report.html import write_report

            stats["report"] = write_report(self.out, stored)
        return stats

    def _plan(self, k: int, prev_fp: str, prev_outputs: list[str]) -> _Step | None:
        """Stage k's parameters, folder, inputs and fingerprint (None: --new-only found nothing)."""
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
        if self.new_only:
            files = self._ledger().new_files(files)
            if not files:
                self.log(f"[{k:02d} {spec.stage}] --new-only: no input object is new since the last run")
                return None
        self.read_files = files
        if hasattr(cls, "plan_tasks"):  # e.g. byte ranges of large splittable objects
            files = cls.plan_tasks(files)
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
            selected = forcing_here or self.only is None or step.spec.stage in self.only
            if not selected or (not forcing_here and mf.committed(step.sdir, step.fp)):
                break
            if forcing_here:
                storage.delete_prefix(step.sdir)
            forcing = forcing_here
            chain.append(step)
            prev = step
        return chain, forcing

    def _run_parts(self, chain: list[_Step], prev_outputs: list[str], prev_sizes: list[int],
                   t0: float) -> list[dict]:
        """Map/read stages, one task per part; several stages in a row run fused (core/parts.py)."""
        first = chain[0]
        if first.files is not None:
            inputs = [(f, d["path"]) for f, d in zip(first.files, first.inputs_desc)]
            sizes = [f["size"] for f in first.files]
        else:
            inputs = [(p, storage.relpath(p, self.out)) for p in prev_outputs]
            sizes = prev_sizes
        tasks: list[list[dict]] = []   # [stage][part]
        for j, st in enumerate(chain):
            if j:
                before = chain[j - 1].sdir
                inputs = [(p, storage.relpath(p, self.out))
                          for p in (storage.join(before, "data", part_name(i)) for i in range(len(inputs)))]
            tasks.append([dict(input=src, input_desc=desc, stage=st.spec.stage, params=st.params, ctx=st.ctx,
                               stage_dir=st.sdir, part=i, fingerprint=st.fp, sources=st.spec.sources,
                               batch_size=self.recipe.resources.batch_size) for i, (src, desc) in enumerate(inputs)])
        bars = [self.progress.stage(st.k, st.spec.stage, len(inputs), sizes if j == 0 else None)
                for j, st in enumerate(chain)]
        workers = f"{self.engine.name} ({self.recipe.resources.workers} workers)"
        if len(chain) == 1:
            self.log(f"[{first.k:02d} {first.spec.stage}] running on {workers}")
            per_stage = [self.engine.map(run_part, tasks[0], on_result=bars[0].on_part)]
        else:
            names = ", ".join(f"{st.k:02d} {st.spec.stage}" for st in chain)
            self.log(f"[{first.k:02d} {first.spec.stage}] running on {workers}, fused: {names}")

            def on_result(i: int, markers: list[dict]) -> None:
                for bar, m in zip(bars, markers):
                    bar.on_part(i, m)

            results = self.engine.map(run_chain, [{"steps": [t[i] for t in tasks]} for i in range(len(inputs))],
                                      on_result=on_result)
            per_stage = [[r[j] for r in results] for j in range(len(chain))]
        # fused stages share the wall time in proportion to the work their parts measured
        wall = time.time() - t0
        work = [sum(float(m.get("seconds", 0.0)) for m in parts) for parts in per_stage]
        total = sum(work)
        out = []
        for st, parts, w, bar in zip(chain, per_stage, work, bars):
            seconds = wall * (w / total if total else 1 / len(chain))
            m = self._commit(st.k, st.spec.stage, st.sdir, st.fp, st.params, st.inputs_desc, parts, seconds,
                             chars_in=self.stats[-1]["chars"].get("kept") if self.stats else None,
                             sources=st.spec.sources)
            bar.close(m["counts"]["in"], m["seconds"])
            row = self._stat_row(m, skipped=False)
            if len(chain) > 1:
                row["fused_with"] = [c.spec.stage for c in chain if c is not st]
            self.stats.append(row)
            out.append(m)
        return out

    def _run_global(self, step: _Step, prev_outputs: list[str], t0: float) -> dict:
        self.log(f"[{step.k:02d} {step.spec.stage}] running on {self.engine.name} "
                 f"({self.recipe.resources.workers} workers)")
        bar = self.progress.stage(step.k, step.spec.stage, len(prev_outputs))
        job = GlobalJob(self, step.sdir, prev_outputs, step.fp, step.ctx, step.params, step.spec.stage, bar)
        parts = step.cls(step.cls.Params(**step.params), StageContext(**step.ctx)).execute(job)
        m = self._commit(step.k, step.spec.stage, step.sdir, step.fp, step.params, step.inputs_desc, parts,
                         time.time() - t0, chars_in=self.stats[-1]["chars"].get("kept") if self.stats else None,
                         sources=step.spec.sources)
        bar.close(m["counts"]["in"], m["seconds"])
        self.stats.append(self._stat_row(m, skipped=False))
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

    def _commit(self, k, name, sdir, fp, params, inputs_desc, parts, seconds, chars_in: int | None = None,
                sources: list[str] | None = None) -> dict:
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
        # characters in = what the stage before kept (a read stage: what it produced); what a
        # transform removed from the rows it kept is in - kept - rejected
        chars["in"] = chars_in if chars_in is not None else chars["kept"] + chars["rejected"]
        chars["removed_from_kept"] = chars["in"] - chars["kept"] - chars["rejected"]
        m = {"stage": name, "index": k, "fingerprint": fp, "recipe": self.recipe.fingerprint(),
             "code_version": mf.code_version(), "params": params, "inputs": inputs_desc,
             "outputs": [p["output"] for p in parts], "rejects": [p["rejects"] for p in parts],
             "counts": {"in": n_in, "kept": kept, "rejected": dict(sorted(rej.items()))},
             "counters": dict(sorted(counters.items())), "chars": dict(sorted(chars.items())),
             "length_hist": dict(sorted(hist.items(), key=lambda x: int(x[0]))),
             "seconds": round(seconds, 3), "engine": self.recipe.engine, "workers": self.recipe.resources.workers,
             "skipped_parts": sum(1 for p in parts if p.get("skipped")), "complete": True}
        if sources is not None:
            m["sources"] = sources
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
                "length_hist": m.get("length_hist", {}), "fingerprint": m["fingerprint"],
                "chars": m.get("chars", {}), **({"sources": m["sources"]} if "sources" in m else {}),
                **({"tokens": m["artifacts"][0]["tokens"]} if m.get("artifacts") and "tokens" in m["artifacts"][0]
                   else {})}


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
