"""Training callbacks used by the tests (passed to ``run_training(recipe, callbacks=...)``).
Workers do not have tests/ on their import path, so a test ships this module by value
(``ship_by_value()``) before starting a run that uses one of these callbacks."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from lmrefinery.core import storage
from lmrefinery.train.callbacks import StepEnd

FAIL_MARKER = "_injected_failure"


@dataclass(frozen=True)
class FailOnceAt:
    """The last worker raises at ``step``, once per run folder (a marker file in the run
    folder records that the failure happened, so Ray's restarted group runs through)."""
    step: int

    def on_step_end(self, info: StepEnd) -> None:
        if info.step != self.step or info.rank != info.world - 1:
            return
        marker = storage.join(info.run_dir, FAIL_MARKER)
        if storage.exists(marker):
            return
        storage.write_bytes(marker, f"step {info.step}\n".encode())
        raise RuntimeError(f"injected failure at step {info.step} (tests/train_hooks.FailOnceAt)")


def ship_by_value() -> None:
    """Pickle this module's classes by value, so Ray workers can unpickle them."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
