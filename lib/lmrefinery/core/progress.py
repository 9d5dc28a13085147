"""Progress of a run as the operator sees it: one bar per stage (documents,
MB/s, ETA), a global stage's internal rounds as sub-steps of its bar, and the
engine's start-up reported on its own line.

Three modes: ``bar`` (tqdm, on a terminal), ``log`` (plain lines, throttled:
what a scheduler or a Ray job log gets when stderr is not a terminal) and
``off`` (``--quiet``). ``LMR_PROGRESS=bar|log|off`` overrides the choice.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["bar", "log", "off"]
LOG_EVERY_S = 10.0  # log mode: at most one line per stage this often (plus the last one)


def choose_mode(quiet: bool) -> Mode:
    if quiet:
        return "off"
    forced = os.environ.get("LMR_PROGRESS", "").strip().lower()
    if forced in ("bar", "log", "off"):
        return forced  # type: ignore[return-value]
    return "bar" if sys.stderr.isatty() else "log"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


@dataclass
class StageProgress:
    """The progress of one stage; ``on_part`` is the engine's on_result callback."""

    label: str                       # "04 quality"
    mode: Mode
    total: int                       # parts (map/read) or tasks of the current step (global)
    sizes: list[int] = field(default_factory=list)  # input bytes per part, when known
    step: str = ""
    done: int = 0
    docs: int = 0
    bytes: int = 0
    t0: float = field(default_factory=time.time)
    _last_log: float = 0.0
    _bar: Any = None   # a tqdm bar in bar mode

    def __post_init__(self) -> None:
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.label, unit="part", file=sys.stderr,
                             dynamic_ncols=True, leave=True, mininterval=0.5,
                             bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}{postfix}]")

    # ------------------------------------------------------------ callbacks
    def on_part(self, i: int, result: dict[str, Any]) -> None:
        self.done += 1
        if not self.step:  # rounds of a global stage see their own tasks, not documents
            self.docs += int(result.get("in", 0) or 0)
            if i < len(self.sizes):
                self.bytes += int(self.sizes[i] or 0)
        self._show()

    def start_step(self, name: str, n_tasks: int) -> Callable[[int, dict[str, Any]], None]:
        """A global stage's internal round: shown as a sub-step of this stage's bar."""
        self.step, self.done, self.total = name, 0, n_tasks
        if self._bar is not None:
            self._bar.reset(total=n_tasks)
            self._bar.set_description(f"{self.label} > {name}")
        return self.on_part

    def finish_step(self) -> None:
        if self.mode == "log" and self.step:
            self._print(f"step {self.step}: {self.done}/{self.total} tasks")

    # ------------------------------------------------------------ rendering
    def rate_text(self) -> str:
        dt = max(time.time() - self.t0, 1e-6)
        out = [f"{self.docs:,} docs"] if self.docs else []
        if self.bytes:
            rate = self.bytes / 1e6 / dt
            out.append(f"{rate:,.1f} MB/s" if rate >= 10 else f"{rate:.2f} MB/s")
        return ", ".join(out)

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.rate_text(), refresh=False)
            self._bar.update(1)
        elif self.mode == "log":
            now = time.time()
            if now - self._last_log >= LOG_EVERY_S and self.done < self.total:
                self._last_log = now
                what = f"step {self.step}: " if self.step else ""
                eta = (now - self.t0) / self.done * (self.total - self.done)
                rate = self.rate_text()
                self._print(f"{what}{self.done}/{self.total} {'tasks' if self.step else 'parts'}"
                            f"{', ' + rate if rate else ''}, ETA {eta:,.0f} s")

    def _print(self, msg: str) -> None:
        print(f"  [{self.label}] {msg}", file=sys.stderr, flush=True)

    def close(self, docs_in: int, seconds: float) -> None:
        if self._bar is not None:
            self._bar.set_description(self.label)
            self._bar.set_postfix_str(f"{docs_in:,} docs in, {seconds:,.1f} s", refresh=False)
            self._bar.close()
        elif self.mode == "log":
            size = f", {_mb(self.bytes)} read" if self.bytes else ""
            self._print(f"done: {docs_in:,} docs in, {seconds:,.1f} s{size}")


class RunProgress:
    """Hands out one StageProgress per stage and times the engine start-up."""

    def __init__(self, quiet: bool = False):
        self.mode: Mode = choose_mode(quiet)

    def stage(self, index: int, name: str, total: int, sizes: list[int] | None = None) -> StageProgress:
        return StageProgress(f"{index:02d} {name}", self.mode, total, list(sizes or []))

    def engine_started(self, engine: str, seconds: float) -> None:
        if self.mode != "off":
            print(f"[{engine}] engine started in {seconds:,.1f} s (not counted in any stage)",
                  file=sys.stderr, flush=True)
