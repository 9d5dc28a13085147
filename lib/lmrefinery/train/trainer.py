"""Driver side: build the ``TorchTrainer`` from a recipe and run it (or, with
``trainer.backend: local``, run the loop in this process), resuming from the run's
latest checkpoint when there is one; then export the model and, for instruction
tuning, score it against its starting point on held-out prompts."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence

from ..core import storage
from .callbacks import TrainCallback
from .checkpoint import BEST_DIR, TRAINER_STATE
from .config import TrainRecipe, tokens_per_step
from .loop import train_loop
from .metrics import read_metrics

MODEL_DIR = "model"            # final export
BEST_MODEL_DIR = "model-best"  # export of the best-by-validation weights (trainer.keep: last)
LAST_MODEL_DIR = "model-last"  # export of the last step's weights (trainer.keep: best)
REPORT = "train_report.json"


def _storage_args(output: str) -> dict:
    """Ray's RunConfig storage for a local path or s3:// (with AWS_ENDPOINT_URL honoured
    for S3-compatible servers)."""
    if not storage.is_s3(output):
        return {"storage_path": os.path.abspath(output)}
    import pyarrow.fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kw = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kw.update(endpoint_override=host or endpoint, scheme=scheme if host else "https")
    b, k = storage.split_s3(output)
    return {"storage_path": f"{b}/{k}".rstrip("/"), "storage_filesystem": pafs.S3FileSystem(**kw)}


def _ray_address_env() -> dict:
    """The driver's cluster address for the workers, so code in them that
    touches Ray joins this cluster rather than guessing among several."""
    import ray

    return {"RAY_ADDRESS": ray.get_runtime_context().gcs_address} if ray.is_initialized() else {}


# Settings (never credentials) the workers need to reach the same storage and caches.
# Credentials reach workers through the cluster's own chain — the environment the Ray
# nodes were started with, instance roles, AWS_PROFILE files, a secret reference —
# because a runtime_env is logged by Ray (runtime_env_agent.log, world-readable).
WORKER_ENV_PREFIXES = ("AWS_", "HF_", "TRANSFORMERS_", "LMR_")
_SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "ACCESS_KEY", "API_KEY", "PRIVATE")


def is_secret_name(name: str) -> bool:
    up = name.upper()
    return any(w in up for w in _SECRET_WORDS) or up in ("AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")


def worker_env() -> dict[str, str]:
    """The runtime_env env_vars for Ray Train workers: settings only, no secrets."""
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES) and not is_secret_name(k)}
    return env | {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"} | _ray_address_env()


def build_trainer(recipe: TrainRecipe, callbacks: Sequence[TrainCallback] = ()):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t = recipe.trainer
    res = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        res["GPU"] = 1
    scaling = ScalingConfig(num_workers=t.workers, use_gpu=t.use_gpu, resources_per_worker=res)
    run = RunConfig(name=recipe.name, failure_config=FailureConfig(max_failures=t.max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=t.keep_last),
                    # Ray Train v2's RunConfig (the one used at run time) takes it; mypy sees v1's
                    worker_runtime_env={"env_vars": worker_env()},  # type: ignore[call-arg]
                    **_storage_args(recipe.output))
    return TorchTrainer(train_loop, train_loop_config={"recipe": recipe.model_dump(mode="json"),
                                                         "callbacks": list(callbacks)},
                        scaling_config=scaling, run_config=run)


def _ckpt_dir(uri_or_ckpt) -> tuple[str, bool]:
    """Local folder of a checkpoint (downloaded when remote); bool: is a temp copy."""
    if hasattr(uri_or_ckpt, "to_directory"):
        return uri_or_ckpt.to_directory(), True
    if storage.is_s3(uri_or_ckpt):
        from .files import download_dir

        return download_dir(uri_or_ckpt), True
    return uri_or_ckpt, False


def _export_checkpoint(recipe: TrainRecipe, ckpt, dest: str, extra: dict | None = None) -> tuple[str, dict]:
    """Export a checkpoint (Ray Checkpoint or folder URI) as an HF model; returns (URI, trainer state)."""
    from .export import export_model, model_from_checkpoint

    d, tmp = _ckpt_dir(ckpt)
    try:
        model, tok = model_from_checkpoint(recipe, d)
        with open(os.path.join(d, TRAINER_STATE)) as f:
            st = json.load(f)
        return export_model(model, tok, dest, extra=dict(extra or {}, trainer_state=st)), st
    finally:
        if tmp:
            shutil.rmtree(d, ignore_errors=True)


def export_models(recipe: TrainRecipe, last_ckpt, report: dict) -> None:
    """model/ gets the weights ``trainer.keep`` names; the other ones go next to it
    (model-best/ or model-last/). report["model_holds"] says which is which."""
    run_dir = recipe.run_dir
    extra = {"recipe": recipe.model_dump(mode="json")}
    best_uri = storage.join(run_dir, BEST_DIR)
    has_best = storage.exists(storage.join(best_uri, TRAINER_STATE))
    keep = recipe.trainer.keep if has_best else "last"
    main_src, other_src = (best_uri, last_ckpt) if keep == "best" else (last_ckpt, best_uri if has_best else None)
    report["model"], st = _export_checkpoint(recipe, main_src, storage.join(run_dir, MODEL_DIR), extra)
    holds = {"weights": keep, "step": st.get("step"), "keep": recipe.trainer.keep}
    if recipe.trainer.keep == "best" and not has_best:
        holds["note"] = "no validation loss was recorded, so model/ holds the last step's weights"
    if st.get("best_val_loss") is not None:
        holds["best_val_loss"], holds["best_step"] = st["best_val_loss"], st.get("best_step")
    if other_src is not None:
        other_dir = LAST_MODEL_DIR if keep == "best" else BEST_MODEL_DIR
        uri, ost = _export_checkpoint(recipe, other_src, storage.join(run_dir, other_dir), extra)
        report["model_last" if keep == "best" else "model_best"] = uri
        holds["other"] = {"path": uri, "weights": "last" if keep == "best" else "best", "step": ost.get("step")}
    report["model_holds"] = holds


def run_training(recipe: TrainRecipe, callbacks: Sequence[TrainCallback] = ()) -> dict:
    """Train (or resume) the run of ``recipe``; ``callbacks`` run inside every worker
    (see ``train/callbacks.py``: a code-level hook, e.g. for tests, never a recipe key)."""
    from .preflight import check_data, check_paths

    t0 = time.time()
    t = recipe.trainer
    check_paths(recipe)
    data_check = check_data(recipe)  # on the driver: a data error is never retried by Ray Train
    run_dir = recipe.run_dir
    print(f"[train] {recipe.kind} {recipe.name}: {t.workers} worker(s) on {t.backend}, run folder {run_dir}",
          file=sys.stderr, flush=True)
    if t.tokens is not None:
        print(f"[train] trainer.tokens={t.tokens:,}: {t.max_steps} steps of "
              f"{tokens_per_step(t, recipe.data.seq_len):,} tokens", file=sys.stderr, flush=True)
    last_checkpoint = _fit(recipe, callbacks)
    metrics = read_metrics(run_dir)
    events = [r.get("event") for r in metrics if "event" in r]
    finished = bool(events) and events[-1] == "finished"
    report: dict = {"name": recipe.name, "kind": recipe.kind, "run_dir": run_dir, "finished": finished,
                    "wall_seconds": None, "backend": t.backend,
                    "checkpoint": getattr(last_checkpoint, "path", last_checkpoint),
                    "starts": [r.get("resumed_from_step") for r in metrics if r.get("event") == "start"]}
    steps = [r for r in metrics if "loss" in r]
    if steps:
        report["final"] = steps[-1]
        report["first"] = steps[0]
    vals = [r for r in metrics if "val_loss" in r]
    if vals:
        best = min(vals, key=lambda r: r["val_loss"])
        report["best_val"] = {"step": best["step"], "val_loss": best["val_loss"], "val_ppl": best["val_ppl"]}
    if finished and last_checkpoint is not None:
        export_models(recipe, last_checkpoint, report)
        if recipe.kind == "sft" and recipe.sft.eval_prompts > 0:
            report["sft_eval"] = sft_evaluate(recipe, report["model"])
    report["budget"] = {"max_steps": t.max_steps, "tokens": t.tokens,
                        "tokens_per_step": tokens_per_step(t, recipe.data.seq_len),
                        "trained_tokens": (steps[-1].get("tokens") if steps else None)}
    report["wall_seconds"] = round(time.time() - t0, 1)
    report["data_check"] = data_check
    storage.write_bytes(storage.join(run_dir, REPORT),
                        json.dumps(report, indent=1, ensure_ascii=False, default=str).encode())
    return report


def _fit(recipe: TrainRecipe, callbacks: Sequence[TrainCallback]):
    """Train to the end (or to ``stop_at_step``); returns the last checkpoint: a Ray
    ``Checkpoint`` (backend ray) or its folder's URI (backend local), None if none."""
    if recipe.trainer.backend == "local":
        from .session import LocalSession, run_local

        session = LocalSession(recipe.run_dir, recipe.trainer.keep_last)
        run_local(train_loop, {"recipe": recipe.model_dump(mode="json"), "callbacks": list(callbacks)},
                  session, recipe.trainer.max_failures)
        return session.latest_uri()
    from ..engines.ray_engine import ensure_ray

    ensure_ray(recipe.ray_address)
    return build_trainer(recipe, callbacks).fit().checkpoint


def sft_evaluate(recipe: TrainRecipe, tuned_uri: str) -> dict:
    """ROUGE-L / BLEU of the tuned model and of its starting point on the same held-out
    prompts, run as a Ray task (on a GPU when the recipe trains on GPUs), or here with
    ``trainer.backend: local``."""
    from .data import heldout_conversations

    convs = heldout_conversations(recipe, recipe.sft.eval_prompts)
    if not convs:
        return {"error": "no held-out instruction documents with a loss mask"}
    if recipe.trainer.backend == "local":
        def run(*args):
            return _eval_task(*args)
    else:
        import ray

        task = (ray.remote(num_gpus=1) if recipe.trainer.use_gpu else ray.remote(num_cpus=1))(_eval_task)

        def run(*args):
            return ray.get(task.remote(*args))
    s = recipe.sft
    tuned = run(tuned_uri, convs, s.max_new_tokens, s.zh_tokenize, s.samples_in_report,
                recipe.tokenizer, recipe.chat_template)
    out = {"prompts": len(convs), "tuned": tuned}
    if recipe.model.init != "scratch":
        out["base"] = run(recipe.model.init, convs, s.max_new_tokens, s.zh_tokenize,
                          s.samples_in_report, recipe.tokenizer, recipe.chat_template)
    return out


def _eval_task(model_uri, convs, max_new_tokens, zh, samples, tokenizer, chat_template):
    import tempfile

    from .evaluate import evaluate_model
    from .export import load_tokenizer
    from .files import download_dir

    d = download_dir(model_uri)
    # score with the tokenizer the held-out ids were made with
    tokdir = tempfile.mkdtemp(prefix="lmr-evaltok-")
    load_tokenizer(tokenizer, chat_template).save_pretrained(tokdir)
    try:
        return evaluate_model(d, convs, max_new_tokens, zh, samples, tokenizer_dir=tokdir)
    finally:
        shutil.rmtree(tokdir, ignore_errors=True)
        if d != model_uri:
            shutil.rmtree(d, ignore_errors=True)
