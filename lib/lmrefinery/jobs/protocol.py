"""The job convention that schedulers rely on: an exit code (0 done, 1 failed,
2 bad recipe or arguments) and two machine-readable lines on stdout, parsed from
the job's log (the Airflow DAG, tests):

    LMR_RESULT {"phase": ..., "output": ..., "report": ..., "stats": ..., ...}
    LMR_FAILED {"phase": ..., "error": ..., "type": ...}

Human-readable ``output:`` / ``report:`` / ``stats:`` lines are printed too."""
from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

RESULT_TAG = "LMR_RESULT"
FAILED_TAG = "LMR_FAILED"


class PhaseError(ValueError):
    """The recipe has nothing for the requested phase (an argument error, exit 2)."""


def emit_result(result: dict[str, Any]) -> None:
    """The closing lines of a successful job (humans read the first ones,
    schedulers parse the tagged one)."""
    for key in ("output", "report", "stats"):
        if result.get(key):
            print(f"{key}: {result[key]}", flush=True)
    print(f"{RESULT_TAG} {json.dumps(result, sort_keys=True, default=str)}", flush=True)


def guarded(fn: Callable[[], dict[str, Any]], phase: str) -> int:
    """Run ``fn`` and turn its outcome into an exit code and tagged log lines."""
    from ..core.recipe import RecipeError

    t0 = time.time()
    try:
        result = fn()
    except (PhaseError, FileNotFoundError, RecipeError) as e:
        return _fail(phase, e, 2, t0)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - report every failure the same way
        traceback.print_exc()
        return _fail(phase, e, 1, t0)
    result["seconds"] = round(time.time() - t0, 2)
    emit_result(result)
    return 0


def _fail(phase: str, e: BaseException, code: int, t0: float) -> int:
    msg = str(e) or type(e).__name__
    print(f"lmrefinery {phase}: error: {msg}", file=sys.stderr, flush=True)
    print(f"{FAILED_TAG} " + json.dumps({"phase": phase, "error": msg, "type": type(e).__name__,
                                         "exit_code": code, "seconds": round(time.time() - t0, 2)}),
          flush=True)
    return code


def parse_tagged(log: str, tag: str = RESULT_TAG) -> dict[str, Any] | None:
    """The last ``LMR_RESULT`` (or ``LMR_FAILED``) object in a job's log."""
    found = None
    for line in log.splitlines():
        i = line.find(tag + " ")
        if i >= 0:
            try:
                found = json.loads(line[i + len(tag) + 1:])
            except json.JSONDecodeError:
                continue
    return found
