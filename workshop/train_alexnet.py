"""Module 2: train AlexNet on 224 crops, convert it to a fully convolutional net, map scenes.

    make train-alexnet                                    # synthetic shapes, CPU-sized width
    python -m workshop.train_alexnet --epochs=12 --width=0.5
    python -m workshop.train_alexnet --dataset=path/to/folder   # train/ + val/ or class folders
    python -m workshop.train_alexnet --dataset=path/to/PetImages
    python -m workshop.train_alexnet --pretrained=true --width=1  # start from ImageNet weights
    python -m workshop.train_alexnet --resume=true        # continue a killed run
    torchrun --standalone --nproc_per_node=2 -m workshop.train_alexnet   # DDP

Writes artifacts/alexnet/: checkpoint.pt (the fully convolutional net), train_state.pt
(resumable), metrics.json, history.json, curves.png and heatmaps_*.png, and records the run
(every setting, each epoch's numbers, the final ones) in artifacts/mlflow.db (`make runs`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from models import synthetic
from models.alexnet import WINDOW, PaddedFCN, alexnet
from models.heatmap import save_png
from workshop import engine, runs
from workshop.cli import parse_config
from workshop.data import images as imgdata
from workshop.data.prepare import resolve
from workshop.data.synthetic_set import synthetic_data
from workshop.distributed import Dist, end_run
from workshop.fcn import compare_with_sliding_window, heatmap_figure, pointing_game
from workshop.plots import plot_history, save_figure
from workshop.tracking import data_params

# The one-cycle schedule's warm-up: the share of all steps spent rising to the peak lr
# (the New run page's LR preview reads it from here).
PCT_START = 0.2
# The settings with a fixed set of values (the New run page offers them as a list).
CHOICES = {"synthetic_size": ["full", "small"], "device": ["auto", "cpu", "cuda", "mps"]}


@dataclass
class AlexNetConfig:
    dataset: str = "synthetic"  # synthetic | cats-dogs (make data) | an image folder or PetImages
    synthetic_size: str = "full"  # full | small (smoke tests)
    data_dir: str = "data"  # where generated data and image caches go
    width: float = 0.0  # channel multiplier; 0 = auto (0.25 on CPU, 1.0 on GPU)
    pretrained: bool = False  # start from torchvision's ImageNet weights (width 1 only)
    epochs: int = 22  # passes over the training crops
    batch_size: int = 64  # images per step (per process under DDP)
    lr: float = 1e-3  # peak AdamW learning rate (one-cycle schedule)
    weight_decay: float = 1e-4  # AdamW weight decay
    device: str = "auto"  # auto | cpu | cuda | mps
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # NHWC memory format (faster on CUDA and on CPU here)
    seed: int = 0  # data order, augmentation, initialization
    resume: bool = False  # continue from out_dir/train_state.pt
    max_steps: int = 0  # stop each epoch after this many steps (0 = full epochs; smoke runs)
    pointing_scenes: int = 0  # held-out scenes for the pointing game (0 = all)
    sliding_check: bool = True  # compare with the sliding window on a 1080p scene
    examples: int = 3  # held-out scenes drawn as heatmaps_<n>.png and overlay_<n>.png
    out_dir: str = ""  # default: artifacts/alexnet (or $ARTIFACTS/alexnet)


def load_data(cfg: AlexNetConfig, d: Dist):
    """(train, val) CachedImages, the scenes folder for synthetic data (else None), the data
    set's name and its folder."""
    root = Path(cfg.data_dir)
    scenes = None
    if cfg.dataset == "synthetic":
        syn_root = synthetic_data(cfg, d)
        crops = syn_root / "crops"
        train_f = imgdata.ImageFolder.scan(crops / "train")
        val_f = imgdata.ImageFolder.scan(crops / "val")
        scenes = syn_root / "scenes" / "val"
        name, where = syn_root.name, syn_root
    else:
        where = Path(resolve(cfg.dataset, cfg.data_dir) or cfg.dataset)  # cats-dogs: make data
        train_f, val_f = imgdata.split_folders(where, seed=cfg.seed)
        name = where.name
    cache_dir = root / "cache"
    caches = []
    for split, folder in (("train", train_f), ("val", val_f)):
        if d.is_main:
            caches.append(imgdata.cache_images(folder, cache_dir, f"{name}-{split}"))
        if d.enabled:
            dist.barrier()
        if not d.is_main:
            caches.append(imgdata.cache_images(folder, cache_dir, f"{name}-{split}"))
    return caches[0], caches[1], scenes, name, where


def crop_batches(train, val, cfg: AlexNetConfig, run: runs.Run):
    """(epoch -> get_batch for training, get_batch for validation): uint8 crops cut into
    normalized float batches on the device, training ones randomly resized and flipped.

    The uint8 images stay on the GPU when they fit, so batches are cut and augmented there.
    """
    device = run.device
    on_device = device.type == "cuda" and train.images.nbytes < 0.25 * torch.cuda.mem_get_info()[0]
    store = {
        split: torch.from_numpy(np.array(c.images)).to(device if on_device else "cpu")
        for split, c in (("train", train), ("val", val))
    }
    labels = {"train": torch.from_numpy(train.labels), "val": torch.from_numpy(val.labels)}

    def getter(split: str, generator=None):
        def get(indices):
            x = store[split][indices.to(store[split].device)].to(device, non_blocking=True)
            x = imgdata.make_batch(x, train=split == "train", generator=generator)
            return x, labels[split][indices].to(device)

        return get

    def for_epoch(epoch: int):
        return getter(
            "train", torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 101 + run.d.rank)
        )

    return for_epoch, getter("val")


def cross_entropy(logits, y):
    """The loop's loss: (loss, its parts, correct predictions)."""
    loss = F.cross_entropy(logits, y)
    return loss, {"cross_entropy": loss}, (logits.argmax(1) == y).sum().item()


def epoch_report(stats: dict, val: dict) -> str:
    return (
        f"train loss {stats['loss']:.3f} acc {stats['accuracy']:.1%} "
        f"({stats['images_per_s']:.0f} img/s), val loss {val['loss']:.3f} acc {val['accuracy']:.1%}"
    )


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_config(AlexNetConfig, argv)
    with runs.start_run(cfg, "alexnet") as run:  # its record ends FINISHED, FAILED or KILLED
        return train_and_convert(cfg, run)


def train_and_convert(cfg: AlexNetConfig, run: runs.Run) -> dict:
    device, d, width, out, log = run.device, run.d, run.width, run.out, run.log
    try:
        train, val, scenes, data_name, folder = load_data(cfg, d)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    classes = train.classes
    log(
        f"data: {data_name}: {len(train)} train / {len(val)} val crops, classes {classes}"
        + (f", skipped {train.skipped}" if train.skipped else "")
    )
    counts = {"train_images": len(train), "val_images": len(val), "classes": classes}
    skipped = Counter(train.skipped) + Counter(val.skipped)  # files that would not decode
    run.tracker.log_params(data_params(data_name, {**counts, "skipped": dict(skipped)}, folder))
    train_batch, val_batch = crop_batches(train, val, cfg, run)

    try:
        model = alexnet(num_classes=len(classes), width=width, pretrained=cfg.pretrained)
    except (RuntimeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    model, raw = engine.prepare_model(
        model, device, channels_last=cfg.channels_last, d=d, compile=cfg.compile
    )
    model_args = {"num_classes": len(classes), "width": width}
    steps = engine.steps_per_epoch(len(train), cfg, d)
    optimizer, scheduler = engine.build_optimizer(raw, cfg, steps, pct_start=PCT_START)
    meta = {
        "kind": "fcn",
        "classes": classes,
        **imgdata.preprocessing_meta(),
        **PaddedFCN.grid.to_meta(),  # the exported graph's geometry (it pads by 96)
        "background": synthetic.BACKGROUND in classes,
        "trained_on": {"dataset": data_name, "synthetic": cfg.dataset == "synthetic"},
    }
    job = engine.Job(
        model_name="alexnet",
        model_args=model_args,
        meta=meta,
        n_train=len(train),
        train_batch=train_batch,
        val_batch=val_batch,
        val_batches=engine.epoch_batches(len(val), 256, 0, 0, Dist(), shuffle=False),  # in order
        loss_fn=cross_entropy,
        report=epoch_report,
        plot=partial(plot_history, title=f"AlexNet (width {width})"),
        # the loss at chance is ln(classes); 100 times that is a run that diverged
        loss_limit=100 * math.log(len(classes)),
    )
    fitted = engine.fit(run, cfg, model, raw, optimizer, scheduler, job)
    ranks = end_run(raw, d, fitted.samples)  # other ranks end here; the main one evaluates

    about = runs.run_metrics(
        run, cfg, train_seconds=fitted.train_seconds, ranks=ranks, dataset=data_name
    )
    about["skipped_images"] = train.skipped
    metrics = finish(raw, fitted.history, cfg, meta, model_args, run, scenes, about)
    log(
        f"AlexNet (width {width}) on {data_name}: val accuracy {metrics['val_accuracy']:.1%}, "
        + pointing_report(metrics)
        + f", {fitted.train_seconds:.0f} s training on {metrics['device']}"
    )
    print(f"artifacts: {out}/")
    return metrics


def pointing_report(metrics: dict) -> str:
    if metrics.get("pointing_accuracy") is None:
        return "pointing game: no scenes with boxes in this data set"
    return f"pointing accuracy {metrics['pointing_accuracy']:.1%}"


def finish(raw, history, cfg, meta, model_args, run: runs.Run, scenes, about: dict) -> dict:
    """Net surgery, its checks, the pointing game, example heatmaps; save the FCN checkpoint
    and metrics.json (the metrics carry ``about``: how the run went, and its config) and
    record the final metrics."""
    out, device = run.out, run.device
    raw = raw.float().to(memory_format=torch.contiguous_format).eval()
    fcn = raw.to_fully_convolutional()
    x = torch.randn(4, 3, WINDOW, WINDOW, device=device)
    with torch.no_grad():
        surgery_diff = (raw(x) - fcn(x)[:, :, 0, 0]).abs().max().item()
    metrics = {
        "val_accuracy": history[-1]["val_accuracy"],
        "val_loss": history[-1]["val_loss"],
        "epochs": history[-1]["epoch"],
        "fcn_vs_classifier_max_abs_diff": surgery_diff,
        **about,
    }
    if scenes is not None:
        metrics.update(
            pointing_game(
                fcn,
                scenes / "annotations.json",
                scenes / "images",
                meta["classes"],
                limit=cfg.pointing_scenes,
            )
        )
        render_examples(fcn, scenes, meta["classes"], out, cfg.examples)
        if cfg.sliding_check:
            scene = _largest_scene(scenes)
            metrics["sliding_window"] = compare_with_sliding_window(raw, scene)
    runs.save_trained(
        run,
        fcn,
        model_name="alexnet_fcn",
        model_args=model_args,
        meta=meta,
        metrics=metrics,
        headline=("val_accuracy", "pointing_accuracy"),
        final=("pointing_per_class", "fcn_vs_classifier_max_abs_diff", "train_seconds"),
    )
    return metrics


def _largest_scene(scenes: Path):
    coco = json.loads((scenes / "annotations.json").read_text())
    info = max(coco["images"], key=lambda i: i["width"] * i["height"])
    return imgdata.open_rgb(scenes / "images" / info["file_name"])


def render_examples(fcn, scenes: Path, classes: list[str], out: Path, count: int) -> None:
    """heatmaps_<n>.png (every class map and the argmax map) and overlay_<n>.png per scene."""
    for n, path in enumerate(sorted((scenes / "images").glob("*.jpg"))[:count]):
        image = np.asarray(imgdata.open_rgb(path))
        fig, overlays = heatmap_figure(fcn, image, classes)
        save_figure(fig, out / f"heatmaps_{n}.png", dpi=90)
        save_png(overlays[0], out / f"overlay_{n}.png")


if __name__ == "__main__":
    main()
