"""Sub-commands owned by later stages. Each module listed here exposes
`register(subparsers)`; modules not present in this install are skipped."""
import importlib
import importlib.util

COMMAND_MODULES = [
    "lmrefinery.models",         # models fetch
    "lmrefinery.tokenize.cli",   # tokenizer train, inspect
    "lmrefinery.train.cli",      # train
    "lmrefinery.instruct.cli",   # instruct ...
    "lmrefinery.quality.cli",    # quality-model train
    "lmrefinery.ingest.cli",     # ledger
    "lmrefinery.lid.calibrate",  # lid calibrate
    "lmrefinery.jobs",           # job PHASE RECIPE (what jobs/*.py run)
    "lmrefinery.evals.cli",      # eval
    "lmrefinery.ablate.cli",     # ablate
]


def register_all(sub) -> None:
    for mod in COMMAND_MODULES:
        if _exists(mod):
            importlib.import_module(mod).register(sub)


def _exists(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:  # parent package not in this install
        return False
