"""Model presets (Llama architecture, transformers' ``LlamaForCausalLM``), construction
from scratch or from an HF causal-LM directory, and the FLOPs-per-token count used for MFU."""
from __future__ import annotations

import os
from typing import Any

# Sizes follow the usual GPT-3/Pythia/TinyLlama shapes; parameter counts assume a
# 32k vocabulary (the embedding share grows with larger vocabularies).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: ~0.3M params with a 1k vocabulary
    "tiny": dict(hidden_size=96, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=True),
    # ~110M (32k vocab) .. ~125M (50k vocab)
    "125m": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=12, max_position_embeddings=2048, tie_word_embeddings=True),
    # ~340M
    "350m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16, max_position_embeddings=2048, tie_word_embeddings=True),
    # ~1.1B (TinyLlama shape, grouped-query attention)
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False),
}


def llama_config(preset: str, vocab_size: int, overrides: dict | None = None, *, bos_token_id=None,
                 eos_token_id=None, pad_token_id=None, attn_implementation: str = "sdpa"):
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    kw = dict(PRESETS[preset])
    kw.update(overrides or {})
    cfg = LlamaConfig(vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                      pad_token_id=pad_token_id, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                      attention_dropout=0.0, use_cache=False, **kw)
    cfg._attn_implementation = attn_implementation
    return cfg


CAUSAL_SDPA = "lmr_sdpa_causal"


def use_causal_sdpa(model) -> bool:
    """Make an "sdpa" model call SDPA with ``is_causal=True`` and no mask tensor (for
    batches without padding or packed-document masking; returns whether it switched).

    Outside torch.compile transformers already does this for a plain causal batch. Under
    torch.compile (torch < 2.14) it cannot prove from traced values that the batch holds
    no packed documents (``find_packed_sequence_indices`` needs a data-dependent check),
    so every layer gets a materialised boolean mask and SDPA leaves flash attention for
    the memory-efficient kernel with a mask: on an H100 (350m, 16 heads x 64, 32k tokens)
    its forward + backward measured 2.7 ms per layer at seq 1024 and 5.0 ms at seq 2048,
    against flash's 1.6 / 2.4 ms and cuDNN's 1.05 / 1.5 ms. The same attention function
    registered under a name with no mask function makes transformers skip mask creation.
    Only for training without ``data.doc_mask``; exports build their own model."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if model.config._attn_implementation not in ("sdpa", CAUSAL_SDPA):
        return False
    AttentionInterface.register(CAUSAL_SDPA, sdpa_attention_forward)
    model.config._attn_implementation = CAUSAL_SDPA
    return True


def build_model(init: str, preset: str, vocab_size: int, overrides: dict | None = None, *,
                special: dict | None = None, attn_implementation: str = "sdpa", seed: int = 0):
    """``init="scratch"``: a fresh Llama of the preset with the tokenizer's vocabulary
    (weights depend only on ``seed``). Otherwise ``init`` is an HF causal-LM directory."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if init == "scratch":
        cfg = llama_config(preset, vocab_size, overrides, attn_implementation=attn_implementation,
                           **(special or {}))
        torch.manual_seed(seed)
        model: Any = LlamaForCausalLM(cfg)   # transformers is typed in part only
    else:
        from ..core import storage

        if storage.is_s3(init):
            from .files import download_dir

            init = download_dir(init)
        if not os.path.isdir(init):
            raise FileNotFoundError(f"model.init: {init!r} is neither 'scratch' nor an HF model directory")
        model = AutoModelForCausalLM.from_pretrained(init, attn_implementation=attn_implementation,
                                                     dtype=torch.float32)
        if model.get_input_embeddings().weight.shape[0] < vocab_size:
            model.resize_token_embeddings(vocab_size)
    model.config.use_cache = False
    return model


def param_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    return {"total": total, "embedding": emb, "non_embedding": total - emb}


def flops_per_token(config, seq_len: int, n_params_non_embedding: int | None = None) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), PaLM appendix B:
    6 * N + 12 * L * d * T, where N counts every matmul weight (including the output
    projection, excluding the input embedding lookup) and the second term is attention
    scores and weighted sum (causal masking is not discounted, as in PaLM's MFU)."""
    d, L = config.hidden_size, config.num_hidden_layers
    if n_params_non_embedding is None:
        kv = config.num_key_value_heads or config.num_attention_heads
        hd = getattr(config, "head_dim", None) or d // config.num_attention_heads
        per_layer = d * config.num_attention_heads * hd * 2 + d * kv * hd * 2 + 3 * d * config.intermediate_size
        n_params_non_embedding = L * per_layer
    n = n_params_non_embedding + config.vocab_size * d  # output projection (tied or not)
    return 6.0 * n + 12.0 * L * d * seq_len


def matmul_params(config) -> int:
    d = config.hidden_size
    kv = config.num_key_value_heads or config.num_attention_heads
    hd = getattr(config, "head_dim", None) or d // config.num_attention_heads
    per_layer = d * config.num_attention_heads * hd * 2 + d * kv * hd * 2 + 3 * d * config.intermediate_size
    return config.num_hidden_layers * per_layer
