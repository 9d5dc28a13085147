"""Tokenizer loading and the final export: an HF model directory (safetensors weights,
config.json, generation_config.json, tokenizer files, chat template) that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load."""
from __future__ import annotations

import os
import shutil
import tempfile

from ..core import storage
from .chat import CHAT_TEMPLATE, IM_END, IM_START
from .files import upload_dir

_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "[SEP]")
_BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>", "<|bos|>", "[CLS]")
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]")


def load_tokenizer(path: str, chat_template: str | None = None):
    """An HF tokenizer directory, or a bare ``tokenizer.json`` (what the tokenizer stage
    writes), local or ``s3://``. Special tokens are found by their usual names; the chat
    markers are added as special tokens when missing (appended at the end of the
    vocabulary, so ids in existing shards do not change)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    local = _local_copy(path)
    if not os.path.exists(local):
        raise FileNotFoundError(f"tokenizer: {path!r} does not exist (an HF tokenizer directory or a "
                                f"tokenizer.json, e.g. the tokenize stage's tokenizer/ folder)")
    if os.path.isdir(local):
        tok = AutoTokenizer.from_pretrained(local)
    else:
        tok = PreTrainedTokenizerFast(tokenizer_file=local)
    vocab = tok.get_vocab()
    for attr, cands in (("eos_token", _EOS_CANDIDATES), ("bos_token", _BOS_CANDIDATES),
                        ("pad_token", _PAD_CANDIDATES)):
        if getattr(tok, attr) is None:
            for c in cands:
                if c in vocab:
                    setattr(tok, attr, c)
                    break
    if chat_template:
        with open(chat_template, encoding="utf-8") as f:
            tok.chat_template = f.read()
    elif not tok.chat_template:
        # no template of its own (a bare tokenizer.json): ours, with its markers as special tokens
        missing = [t for t in (IM_START, IM_END) if t not in vocab]
        if missing:
            tok.add_special_tokens({"additional_special_tokens": missing})
        tok.chat_template = CHAT_TEMPLATE
    if tok.eos_token is None:
        tok.eos_token = IM_END if IM_END in tok.get_vocab() else None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


_EOT_CANDIDATES = (IM_END, "<|end|>", "<|eot_id|>", "<|end_of_turn|>", "<end_of_turn>")


def stop_token_ids(tok) -> list[int]:
    """EOS plus the end-of-turn tokens the vocabulary has: generation stops at any."""
    vocab = tok.get_vocab()
    ids = {tok.eos_token_id} | {vocab[t] for t in _EOT_CANDIDATES if t in vocab}
    return sorted(i for i in ids if i is not None)


def special_ids(tok) -> dict:
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}


def _local_copy(path: str) -> str:
    """S3 tokenizer paths are copied to a temp folder (file or folder)."""
    if not storage.is_s3(path):
        return path
    d = tempfile.mkdtemp(prefix="lmr-tok-")
    if path.endswith(".json"):
        dst = os.path.join(d, os.path.basename(path))
        storage.write_bytes(dst, storage.read_bytes(path))
        return dst
    for f in storage.list_files(path.rstrip("/") + "/"):
        storage.write_bytes(os.path.join(d, storage.relpath(f, path.rstrip("/"))), storage.read_bytes(f))
    return d


def export_model(model, tok, out: str, extra: dict | None = None) -> str:
    """Write the HF directory to ``out`` (local or ``s3://``)."""
    import json

    from transformers import GenerationConfig

    tmp = tempfile.mkdtemp(prefix="lmr-export-")
    try:
        model.config.use_cache = True
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=stop_token_ids(tok),
            pad_token_id=tok.pad_token_id, max_new_tokens=128)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if extra:
            with open(os.path.join(tmp, "lmrefinery.json"), "w") as f:
                json.dump(extra, f, indent=1, sort_keys=True, default=str)
        upload_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_from_checkpoint(recipe, ckpt_dir: str):
    """Rebuild the model of a recipe and load a checkpoint's weights into it (CPU, fp32)."""
    from .files import read_state_file
    from .model import build_model

    tok = load_tokenizer(recipe.tokenizer, recipe.chat_template)
    model = build_model(recipe.model.init, recipe.model.preset, len(tok), recipe.model.overrides,
                        special=special_ids(tok), attn_implementation=recipe.model.attn_implementation,
                        seed=recipe.trainer.seed)
    blob = read_state_file(ckpt_dir)
    missing, unexpected = model.load_state_dict(blob["model"], strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {ckpt_dir} does not match the model: missing={missing[:5]}, "
                           f"unexpected={unexpected[:5]}")
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model, tok
