"""Where training runs: the device a config names, and the process group under ``torchrun``.

Shared by SFT and RL so both treat 'auto', a missing GPU and more ranks than GPUs the same way.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from uninote.errors import ConfigError


def resolve_device(name: str, auto_cuda: bool = True) -> torch.device:
    """'auto' | 'cpu' | 'cuda' -> a device. 'auto' is CUDA when one is visible and ``auto_cuda``.

    CUDA is GPU ``LOCAL_RANK`` (0 outside torchrun), made the current device; a rank without a GPU
    of its own is a ConfigError that says what to launch instead.
    """
    if name == "auto":
        name = "cuda" if auto_cuda and torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is visible; use --device cpu or auto")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if local >= torch.cuda.device_count():
        raise ConfigError(f"rank {local} has no GPU: {torch.cuda.device_count()} visible; launch at most that "
                          "many processes per node (torchrun --nproc_per_node) or use --device cpu")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group (NCCL on CUDA, else Gloo) when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 or "LOCAL_RANK" in os.environ:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
