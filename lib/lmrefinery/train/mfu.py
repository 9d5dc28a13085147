"""Peak dense matmul throughput of common accelerators, for model FLOPs utilisation.

MFU = model FLOPs per token x tokens/s / (devices x peak). Figures are the vendors'
dense (no 2:4 sparsity) tensor-core numbers per device; see docs/train.md."""
from __future__ import annotations

# name fragment (lower case, matched against torch.cuda.get_device_name) -> {dtype: FLOP/s}
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("gb200", {"bf16": 2500e12, "fp32": 2500e12 / 32}),
    ("b200", {"bf16": 2250e12, "fp32": 80e12}),
    ("h200", {"bf16": 989e12, "fp32": 67e12}),
    ("h100 pcie", {"bf16": 756e12, "fp32": 51e12}),
    ("h100 nvl", {"bf16": 835e12, "fp32": 60e12}),
    ("h100", {"bf16": 989e12, "fp32": 67e12}),        # SXM
    ("gh200", {"bf16": 989e12, "fp32": 67e12}),
    ("h800", {"bf16": 989e12, "fp32": 67e12}),
    ("h20", {"bf16": 148e12, "fp32": 44e12}),
    ("a100", {"bf16": 312e12, "fp32": 19.5e12}),
    ("a800", {"bf16": 312e12, "fp32": 19.5e12}),
    ("l40s", {"bf16": 362e12, "fp32": 91.6e12}),
    ("l40", {"bf16": 181e12, "fp32": 90.5e12}),
    ("l4", {"bf16": 121e12, "fp32": 30.3e12}),
    ("a10g", {"bf16": 70e12, "fp32": 35e12}),
    ("a10", {"bf16": 125e12, "fp32": 31.2e12}),
    ("rtx 4090", {"bf16": 165e12, "fp32": 82.6e12}),
    ("rtx 3090", {"bf16": 71e12, "fp32": 35.6e12}),
    ("v100", {"bf16": 125e12, "fp32": 15.7e12}),      # fp16 tensor cores (no bf16)
    ("t4", {"bf16": 65e12, "fp32": 8.1e12}),
    ("mi300x", {"bf16": 1307e12, "fp32": 163e12}),
    ("mi250x", {"bf16": 383e12, "fp32": 47.9e12}),
]


def peak_flops(device_name: str | None, dtype: str = "bf16") -> float | None:
    """Peak FLOP/s for a device name, or None when unknown (CPUs: MFU is not reported
    unless the recipe gives ``trainer.peak_flops``)."""
    if not device_name:
        return None
    low = device_name.lower()
    for frag, peaks in PEAK_FLOPS:
        if frag in low:
            return peaks.get(dtype) or peaks["bf16"]
    return None


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import platform

    return f"cpu:{platform.processor() or platform.machine()}"


def mfu(flops_per_token: float, tokens_per_s: float, n_devices: int, peak: float | None) -> float | None:
    if not peak or tokens_per_s <= 0:
        return None
    return flops_per_token * tokens_per_s / (n_devices * peak)
