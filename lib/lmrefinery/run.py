"""Run a recipe the way the CLI, the jobs and ablate do: the core Runner with the
features that sit outside core/ attached as hooks (core/hooks.py):

- the input ledger (ingest/ledger.py): a successful run records every input object
  its read stage took; with ``new_only`` the read stage takes only objects the
  ledger does not have yet (or that changed since);
- the HTML report (report/html.py), written from stats.json when the recipe asks.
"""
from __future__ import annotations

from typing import Any

from .core.hooks import FinishedRun, InputFiles, RunHooks
from .core.recipe import Recipe
from .core.runner import Runner
from .ingest.ledger import Ledger, default_location


def ledger_hooks(uri: str, new_only: bool) -> RunHooks:
    """Hooks that read through and record into the ledger at ``uri``."""
    ledger: Ledger | None = None

    def get() -> Ledger:
        nonlocal ledger
        if ledger is None:
            ledger = Ledger(uri)
        return ledger

    def new_files(files: InputFiles) -> InputFiles:
        return get().new_files(files)

    def record(run: FinishedRun) -> None:
        if run.read_files:  # every stage committed: these inputs are done
            run.stats["new_inputs_recorded"] = get().record(run.read_files, run.recipe_name)

    return RunHooks(select_inputs=new_files if new_only else None, before_store=[record])


def write_html_report(run: FinishedRun) -> None:
    """The run's report/index.html, from the stored stats.json."""
    from .report.html import write_report

    assert run.stored is not None
    run.stats["report"] = write_report(run.output, run.stored)


def run_recipe(recipe: Recipe, *, runner: type[Runner] = Runner, new_only: bool = False,
               ledger: str | None = None, **options: Any) -> dict[str, Any]:
    """Run ``recipe`` with the ledger and the report attached; ``options`` are the
    Runner's (engine, only, workers, quiet, break_lock, force). Returns the run's stats."""
    hooks = ledger_hooks(ledger or default_location(recipe.output), new_only)
    if recipe.report:
        hooks.after_store.append(write_html_report)
    return runner(recipe, hooks=hooks, **options).run()


__all__ = ["ledger_hooks", "run_recipe", "write_html_report"]
