"""Where a run happens: the one device decision, and DDP through torchrun's environment.

``pick_device`` chooses CUDA, then MPS, then CPU, and caps a CUDA process to its share of
the GPU in the hosted workshop. ``setup_distributed`` joins the process group when torchrun
started the process; ``end_run`` gathers what every rank should report (its weights digest,
the samples it trained on) and leaves the group, ending the ranks other than the main one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU for "auto"; a named device must exist (ValueError).
    A CUDA device is capped to this process's share of its memory in the hosted workshop."""
    if requested == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        elif _mps_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    else:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ValueError(f"unknown device {requested!r} (auto, cpu, cuda or mps)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available here")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {requested!r} requested but MPS is not available here")
    apply_gpu_share(device)
    return device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def apply_gpu_share(device: torch.device) -> float | None:
    """In the hosted workshop a participant may take only a share of a GPU's memory
    (WORKSHOP_GPU_MEMORY_FRACTION, set by the hub's spawner); cap this process to it."""
    fraction = os.environ.get("WORKSHOP_GPU_MEMORY_FRACTION")
    if device.type != "cuda" or not fraction:
        return None
    torch.cuda.set_per_process_memory_fraction(float(fraction), device)
    return float(fraction)


def describe_device(device: torch.device) -> str:
    """A readable device name for metrics files: 'cpu, 2 threads', 'cuda (NVIDIA H100 ...)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu, {n} thread{'s' if n > 1 else ''}"
    return device.type


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set); else single."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def weights_digest(model: nn.Module) -> str:
    """A short hash of every parameter's bytes: equal digests mean identical weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather(value, d: Dist) -> list:
    """Every rank's ``value`` (any picklable object), in rank order."""
    if not d.enabled:
        return [value]
    out = [None] * d.world_size
    dist.all_gather_object(out, value)
    return out


def end_run(raw_model: nn.Module, d: Dist, samples: list[int]) -> dict:
    """After the last epoch: what the ranks report, then leave the process group.

    Returns ``rank_weight_digests`` (equal: DDP kept the replicas identical) and, under DDP,
    ``rank_sample_indices`` (the training samples each rank saw in its last epoch: disjoint
    shards that cover the data). A rank other than the main one has nothing left to do and
    ends here. It leaves without the interpreter's teardown: gloo's worker threads can still
    be alive then, and their destruction aborts the process now and again ("terminate called
    without an active exception", SIGABRT), which made torchrun report a finished run as failed.
    """
    report = {"rank_weight_digests": gather(weights_digest(raw_model), d)}
    if d.enabled:
        report["rank_sample_indices"] = gather(samples, d)
        dist.destroy_process_group()
        if not d.is_main:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return report
