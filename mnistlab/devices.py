"""Where a network runs: the device, bfloat16 where native, thread count, and the allocator setting."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

import torch

from mnistlab.errors import ProjectError
from mnistlab.machine import cpu_flags, idle_cores, usable_cores


def resolve_device(name: str):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ProjectError("--device cuda: no CUDA GPU is available here (torch sees none); use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ProjectError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep the activation buffers each step frees and re-allocates, instead of unmapping them
    and page-faulting them back in (docs/speed.md); jemalloc's job without a dependency. A no-op off glibc."""
    if platform.libc_ver()[0] != "glibc":  # macOS, Windows, musl: their allocators differ
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        for option in (-3, -1):  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
            libc.mallopt(option, 1 << 30)


def native_bf16(device) -> bool:
    """Whether the device computes bfloat16 in hardware, so that autocast to it is a speed-up (docs/speed.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    # The CPU's own flags (Linux's /proc/cpuinfo): x86 names AVX512-BF16 and AMX, Arm names BF16.
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_amp(requested, device) -> bool:
    """--amp / --no-amp as given; "auto" (the fast and best recipes): bfloat16 only where it is native."""
    if requested == "auto":
        native = native_bf16(device)
        if not native:
            print(f"amp: {device.type} has no native bfloat16 here, so training runs in float32 (--amp forces it)")
        return native
    if requested and not native_bf16(device):
        print(f"amp: {device.type} has no native bfloat16 here; --amp will likely be slower than float32")
    return bool(requested)


def setup_torch(config: dict, device) -> None:
    if device.type == "cpu":
        keep_freed_memory()
    threads, cores = config["threads"] or idle_cores(), usable_cores()  # --threads 0: the cores no one is busy on
    if threads < cores and not config["threads"]:
        print(
            f"note: {cores - threads} of {cores} cores are busy with other work; "
            f"training with {threads} thread(s) (--threads N to choose)"
        )
    torch.set_num_threads(threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
    if device.type != "cpu":
        # Same seed, same metrics; ops without a deterministic version only warn. Not needed on the CPU, whose
        # kernels here are deterministic for a fixed thread count, and the call costs a second of imports.
        torch.use_deterministic_algorithms(True, warn_only=True)
