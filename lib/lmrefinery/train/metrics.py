"""Training metrics: console lines with progress, ``metrics.jsonl`` in the run folder
(local or ``s3://``; rewritten on each flush), and TensorBoard / MLflow / W&B when the
recipe asks for them and the package is installed (a missing package is a warning)."""
from __future__ import annotations

import json
import sys
import time

from ..core import storage

METRICS_FILE = "metrics.jsonl"
MLFLOW_RUN_FILE = "mlflow_run.json"


def read_metrics(run_dir: str) -> list[dict]:
    uri = storage.join(run_dir, METRICS_FILE)
    if not storage.exists(uri):
        return []
    return [json.loads(line) for line in storage.read_bytes(uri).decode().splitlines() if line.strip()]


class MetricsWriter:
    def __init__(self, recipe, active: bool, resume_step: int = 0):
        self.active = active
        self.recipe = recipe
        self.uri = storage.join(recipe.run_dir, METRICS_FILE)
        self.rows: list[dict] = []
        self.t0 = time.time()
        self.sinks: list = []
        if not active:
            return
        # a restart keeps what was logged up to the checkpoint it resumes from
        for r in read_metrics(recipe.run_dir):
            if r.get("step", 0) <= resume_step:
                self.rows.append(r)
        lg = recipe.logging
        if lg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                logdir = storage.join(recipe.run_dir, "tensorboard")
                self.sinks.append(("tb", SummaryWriter(log_dir=logdir, purge_step=resume_step + 1)))
            except ImportError as e:
                print(f"[train] tensorboard requested but not available: {e}", file=sys.stderr)
        if lg.mlflow_uri:
            try:
                import mlflow

                self.sinks.append(("mlflow", self._mlflow_run(mlflow, lg.mlflow_uri)))
            except ImportError as e:
                print(f"[train] mlflow requested but not installed: {e}", file=sys.stderr)
        if lg.wandb_project:
            try:
                import wandb

                run = wandb.init(project=lg.wandb_project, name=recipe.name, resume="allow", id=recipe.name,
                                 config=recipe.model_dump(mode="json"))
                self.sinks.append(("wandb", run))
            except ImportError as e:
                print(f"[train] wandb requested but not installed: {e}", file=sys.stderr)

    def _mlflow_run(self, mlflow, uri: str):
        """One MLflow run per training run: a restart (resume, worker failure) continues
        the run whose id was saved next to the metrics, so its curves stay in one place."""
        id_uri = storage.join(self.recipe.run_dir, MLFLOW_RUN_FILE)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.recipe.name)
        if storage.exists(id_uri):
            saved = json.loads(storage.read_bytes(id_uri))
            if saved.get("tracking_uri") == uri:
                return mlflow.start_run(run_id=saved["run_id"])
        run = mlflow.start_run(run_name=self.recipe.name)
        t, m = self.recipe.trainer, self.recipe.model
        mlflow.log_params({"kind": self.recipe.kind, "preset": m.preset, "init": m.init,
                           "seq_len": self.recipe.data.seq_len, "workers": t.workers, "strategy": t.strategy,
                           "precision": t.precision, "micro_batch_size": t.micro_batch_size,
                           "grad_accum": t.grad_accum, "max_steps": t.max_steps, "lr": t.lr,
                           "warmup_steps": t.warmup_steps})
        storage.write_bytes(id_uri, json.dumps({"tracking_uri": uri, "run_id": run.info.run_id}).encode())
        return run

    def meta(self, row: dict) -> None:
        if self.active:
            self.rows.append(dict(row, time=round(time.time(), 3)))

    def log(self, row: dict) -> None:
        if not self.active:
            return
        row = dict(row, time=round(time.time(), 3))
        self.rows.append(row)
        s = row["step"]
        if self.recipe.logging.console:
            t = self.recipe.trainer
            pct = 100.0 * s / t.max_steps
            el = time.time() - self.t0
            parts = [f"[train {self.recipe.name}] step {s}/{t.max_steps} ({pct:.0f}%)",
                     f"loss {row['loss']:.4f}", f"lr {row['lr']:.2e}", f"gnorm {row['grad_norm']:.3f}",
                     f"{row['tokens_per_s']:,.0f} tok/s"]
            if row.get("mfu") is not None:
                parts.append(f"MFU {100 * row['mfu']:.1f}%")
            if "val_loss" in row:
                parts.append(f"val {row['val_loss']:.4f} ppl {row['val_ppl']:.2f}")
            parts.append(f"{el:.0f}s")
            print(" | ".join(parts), flush=True)
        nums = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("step", "time")}
        for kind, sink in self.sinks:
            if kind == "tb":
                for k, v in nums.items():
                    sink.add_scalar(f"train/{k}", v, s)
            elif kind == "mlflow":
                import mlflow

                mlflow.log_metrics({k: float(v) for k, v in nums.items()}, step=s)
            elif kind == "wandb":
                sink.log(nums, step=s)

    def flush(self) -> None:
        if not self.active:
            return
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows).encode()
        storage.write_bytes(self.uri, data)
        for kind, sink in self.sinks:
            if kind == "tb":
                sink.flush()

    def close(self) -> None:
        """Flush and end every sink (TensorBoard file, MLflow run, W&B run)."""
        if not self.active:
            return
        self.flush()
        for kind, sink in self.sinks:
            try:
                if kind == "tb":
                    sink.close()
                elif kind == "mlflow":
                    import mlflow

                    mlflow.end_run()
                elif kind == "wandb":
                    sink.finish()
            except Exception as e:  # a tracking service must not fail a finished training run
                print(f"[train] closing {kind} failed: {type(e).__name__}: {e}", file=sys.stderr)
        self.sinks = []
