"""The seeded synthetic data set a trainer asks for, generated once per machine and size."""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from models import synthetic
from workshop.distributed import Dist


def synthetic_data(cfg, d: Dist) -> Path:
    """The synthetic data set for cfg.seed and cfg.synthetic_size under cfg.data_dir, made
    by the main process (the others wait for it); returns its root folder."""
    syn_cfg = synthetic.SyntheticConfig(seed=cfg.seed)
    if cfg.synthetic_size == "small":
        syn_cfg = syn_cfg.small()
    root = Path(cfg.data_dir) / ("synthetic" if cfg.synthetic_size == "full" else "synthetic-small")
    if d.is_main:
        synthetic.generate(root, syn_cfg)
    if d.enabled:
        dist.barrier()
    return root
