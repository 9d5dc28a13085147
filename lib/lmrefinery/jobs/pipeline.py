"""A recipe (or one phase of it) run as a job: ``run.run_recipe`` (the Runner with
the ledger and report hooks), then the result dict that ``protocol.guarded`` prints
as ``LMR_RESULT``."""
from __future__ import annotations

import os
from typing import Any

from ..core import manifest as mf
from ..core import storage
from ..core.recipe import Recipe
from ..core.runner import Runner
from ..core.stage import get_stage
from ..core.summary import format_summary
from ..run import run_recipe


class SameInputsRunner(Runner):
    """Reads the objects that the committed read stage of this output read,
    so a later phase of an incremental run sees the same inputs as its curate
    phase (and finds every curation stage committed)."""

    def input_files(self) -> list[dict]:
        files = super().input_files()
        k, name = next((k, s.stage) for k, s in enumerate(self.recipe.stages)
                       if get_stage(s.stage).kind == "read")
        m = mf.read_manifest(self.stage_dir(k, name))
        if m is None:
            raise RuntimeError(f"--reuse-inputs: {self.out} has no committed {name} stage; "
                               "run the curate phase for this output first")
        took = {(d["path"].split("@", 1)[0], d["size"], d["etag"]) for d in m["inputs"]}
        return [f for f in files if (f"{f['input']}:{f['rel']}", f["size"], f["etag"]) in took]


def prepare_engine(recipe: Recipe) -> None:
    """Under spark-submit, build the session from spark-submit's own settings
    (master, executors, confs) before the engine would make a local one; lmrefinery's
    worker settings fill in only what spark-submit left unset."""
    if recipe.engine == "spark" and os.environ.get("PYSPARK_GATEWAY_PORT"):
        from pyspark import SparkConf, SparkContext
        from pyspark.sql import SparkSession

        from ..engines.spark_engine import WORKER_CONF

        SparkContext._ensure_initialized()
        submitted = SparkConf()  # spark-submit's --conf and spark-defaults.conf
        builder = SparkSession.builder.appName(f"lmrefinery-{recipe.name}")
        for key, value in WORKER_CONF.items():
            if not submitted.contains(key):
                builder = builder.config(key, value)
        builder.getOrCreate()


def run_job_recipe(recipe: Recipe, args: Any, phase: str, only: list[str] | None = None) -> dict[str, Any]:
    """Run a (possibly cut) recipe; print the summary; return the result dict that
    ``guarded`` prints as ``LMR_RESULT``."""
    import lmrefinery

    if args.engine:
        recipe.engine = args.engine
    prepare_engine(recipe)
    stats = run_recipe(recipe, runner=SameInputsRunner if args.reuse_inputs else Runner, new_only=args.new_only,
                       ledger=args.ledger, engine=args.engine, only=only, workers=args.workers, quiet=args.quiet)
    extra = {}
    if recipe.engine == "spark":
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        extra["spark_master"] = active.sparkContext.master if active else None
        extra["spark_unix_sockets"] = (active.sparkContext.getConf().get("spark.python.unix.domain.socket.enabled")
                                       if active else None)
    print(format_summary(stats) if stats["stages"] else "nothing new to read: no stage ran", flush=True)
    if args.stats_out:
        mf.write_json(args.stats_out, stats)
    return {
        "phase": phase,
        "lmrefinery": os.path.dirname(os.path.abspath(lmrefinery.__file__)),
        "recipe": recipe.source_file or recipe.name,
        "run": stats["run"],
        "engine": stats["engine"],
        "output": stats["output"],
        "stats": storage.join(stats["output"], "stats.json"),
        "report": stats.get("report"),
        "did_work": stats["did_work"],
        "nothing_new": bool(stats.get("nothing_new")),
        "new_inputs_recorded": stats.get("new_inputs_recorded"),
        "ledger": args.ledger,
        "final_outputs": stats["final_outputs"],
        "stages": [{k: s[k] for k in ("stage", "in", "kept", "rejected", "skipped")} for s in stats["stages"]],
        "planted": stats.get("planted"),
        **extra,
    }
