"""The hardware side of the performance model: GPU profiles, tensor-parallel efficiency, bytes per value.

Symbols (``docs/capacity-model.md``): ``BW`` memory bandwidth, ``peak`` dense fp16 tensor FLOP/s,
``MBU``/``MFU`` achievable fractions of them, ``TP`` tensor-parallel degree with efficiency ``η_TP`` (1 / 0.95 / 0.7 /
0.6 for TP 1/2/4/8; 0.5 for TP 16, an extrapolation for two nodes), ``b`` bytes per value (2 for fp16/bf16, 1 for
fp8). FP8 halves the bytes of weights and of the KV cache; it doubles ``peak`` only on GPUs with FP8 tensor cores
(H100). On an A100 it is weight-only quantisation: fewer bytes, fp16 arithmetic.

Constants and their sources (``docs/capacity-model.md`` has the calibration table that holds them):

- ``BW``, ``peak``, ``MBU`` (A100 0.75, H100 0.80), ``MFU`` 0.65, ``η_TP``, ``GPU_MEMORY_UTILIZATION`` 0.9, fp8
  handling: ``docs/sources.md`` ("Roofline constants", "GPU figures"). MBU/MFU sit in the ranges Vidur's ``mlp.csv``
  gives (MBU 0.69–0.82, MFU 0.65–0.71).
- NVLink per-direction bandwidth: A100 300 GB/s (NVLink 3, 600 GB/s bidirectional), H100 450 GB/s (NVLink 4, 900 GB/s
  bidirectional), NVIDIA datasheets. ``NCCL_EFFICIENCY`` 0.5: achieved all-reduce bus bandwidth for the 1–30 MB
  activations of a decode step is about half the link peak (nccl-tests bus-bandwidth curves only reach ~80 % of
  peak at ≥ 256 MB messages). An assumption, checked only through the TP 2/4/8 calibration points.

Every number here is a model, not a measurement. GPU names are checked in :mod:`loadtest.model.catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "GPUS",
    "GPU_MEMORY_UTILIZATION",
    "NCCL_EFFICIENCY",
    "TP_EFFICIENCY",
    "Dtype",
    "GpuProfile",
    "dtype_bytes",
]

Dtype = Literal["fp16", "fp8"]

TP_EFFICIENCY: Final[dict[int, float]] = {1: 1.0, 2: 0.95, 4: 0.7, 8: 0.6, 16: 0.5}
GPU_MEMORY_UTILIZATION: Final[float] = 0.9
NCCL_EFFICIENCY: Final[float] = 0.5


def dtype_bytes(dtype: Dtype) -> int:
    """``b``: bytes per value of weights and KV cache (1 for fp8, 2 for fp16/bf16)."""
    return 1 if dtype == "fp8" else 2


@dataclass(frozen=True, slots=True)
class GpuProfile:
    """One accelerator: bandwidth in B/s, dense fp16 FLOP/s, memory in bytes, achievable MBU and MFU, and the
    per-direction NVLink bandwidth in B/s used by tensor-parallel all-reduces."""

    name: str
    mem_bw_bytes_s: float
    peak_flops_fp16: float
    mem_bytes: float
    mbu: float
    mfu: float
    fp8_tensor_cores: bool = False
    nvlink_bytes_s: float = 300e9


GPUS: Final[dict[str, GpuProfile]] = {
    "a100": GpuProfile(
        "A100-80GB", 2.039e12, 312e12, 80e9, 0.75, 0.65, fp8_tensor_cores=False, nvlink_bytes_s=300e9
    ),
    "h100": GpuProfile(
        "H100-80GB", 3.35e12, 989e12, 80e9, 0.80, 0.65, fp8_tensor_cores=True, nvlink_bytes_s=450e9
    ),
}
