"""Module 3: train a DetectNet-style detector on COCO-format data, score it with pycocotools.

    make train-detectnet                                  # synthetic scenes, CPU-sized width
    python -m workshop.train_detectnet --epochs=40 --width=0.5 --init=none
    python -m workshop.train_detectnet --dataset=path/to/instances.json --images=path/to/images \\
        --categories=cat,dog --val_dataset=path/to/val.json --val_images=path/to/val_images
    python -m workshop.train_detectnet --resume=true      # continue a killed run
    torchrun --standalone --nproc_per_node=2 -m workshop.train_detectnet   # DDP

The backbone starts from module 2's trained features (artifacts/alexnet/checkpoint.pt)
when that checkpoint exists and has the same width. Writes artifacts/detectnet/:
checkpoint.pt, train_state.pt (resumable), metrics.json (COCO AP, AP50, AP75,
per-class AP, DIGITS' precision and recall), history.json, curves.png and
detections_*.png (held-out scenes, ground truth dashed in white).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.boxes import encode_targets, grid_size
from models.checkpoint import load_checkpoint, save_checkpoint
from models.detectnet import DetectNet, detectnet_loss
from models.heatmap import save_png
from models.imageio import MAX_SIDE
from workshop import engine
from workshop.cli import parse_config
from workshop.data import detection
from workshop.data.images import preprocessing_meta
from workshop.data.prepare import resolve
from workshop.detect import CLUSTER_IOU, THRESHOLD, evaluate_detector, render_detections


@dataclass
class DetectNetConfig:
    dataset: str = "synthetic"  # synthetic | coco (make data, with --categories) | a COCO JSON
    images: str = ""  # the JSON's image folder (default: images/ beside it)
    val_dataset: str = ""  # held-out COCO JSON (default: synthetic val scenes, or 15% of dataset)
    val_images: str = ""  # its image folder (default: images/ beside it)
    categories: str = ""  # comma-separated category names to keep (default: all)
    synthetic_size: str = "full"  # full | small (smoke tests)
    data_dir: str = "data"  # where generated data goes
    width: float = 0.0  # channel multiplier; 0 = auto (0.25 on CPU, 1.0 on GPU)
    init: str = "auto"  # backbone start: auto (module 2's checkpoint if it fits) | none | a path
    epochs: int = 30  # passes over the training images
    batch_size: int = 16  # crops per step (per process under DDP)
    crop_h: int = 384  # training crop height (pixels)
    crop_w: int = 512  # training crop width (pixels)
    lr: float = 2e-3  # peak AdamW learning rate (one-cycle schedule)
    weight_decay: float = 1e-4  # AdamW weight decay
    device: str = "auto"  # auto | cpu | cuda | mps
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # NHWC memory format
    seed: int = 0  # data order, augmentation, initialization
    resume: bool = False  # continue from out_dir/train_state.pt
    max_steps: int = 0  # stop each epoch after this many steps (0 = full epochs; smoke runs)
    threshold: float = THRESHOLD  # coverage threshold for proposals at evaluation
    cluster_iou: float = CLUSTER_IOU  # clustering overlap
    eval_images: int = 0  # held-out images to score (0 = all)
    out_dir: str = ""  # default: artifacts/detectnet (or $ARTIFACTS/detectnet)


def load_data(cfg: DetectNetConfig, d: engine.Dist):
    """(train, val) CocoDetection and a short name for the data set."""
    categories = [c.strip() for c in cfg.categories.split(",") if c.strip()] or None
    if cfg.dataset == "synthetic":
        root = engine.synthetic_data(cfg, d)
        scenes = root / "scenes"
        train = detection.CocoDetection(scenes / "train" / "annotations.json", None, categories)
        val = detection.CocoDetection(scenes / "val" / "annotations.json", None, categories)
        return train, val, root.name
    if cfg.dataset == "coco":  # prepared by `make data DATASET=coco CATEGORIES=...`
        root = resolve("coco", cfg.data_dir, categories)
        train = detection.CocoDetection(root / "train" / "annotations.json", None, categories)
        val = detection.CocoDetection(root / "val" / "annotations.json", None, categories)
        return train, val, root.name
    train = detection.CocoDetection(cfg.dataset, cfg.images or None, categories)
    if cfg.val_dataset:
        val = detection.CocoDetection(cfg.val_dataset, cfg.val_images or None, categories)
    else:
        train, val = train.split(0.15, seed=cfg.seed)
    return train, val, Path(cfg.dataset).stem


def init_backbone(model: DetectNet, cfg: DetectNetConfig, width: float, log) -> str:
    """Copy module 2's conv1-conv5 into the detector; returns where the backbone came from."""
    if cfg.init == "none":
        return "random"
    path = (
        Path(cfg.init) if cfg.init != "auto" else engine.artifacts_dir("alexnet") / "checkpoint.pt"
    )
    if not path.is_file():
        if cfg.init != "auto":
            raise SystemExit(f"error: --init={cfg.init}: no such checkpoint")
        log(f"backbone: random (no {path}; `make train-alexnet` first to start from module 2)")
        return "random"
    ckpt = load_checkpoint(path)
    theirs = ckpt["model_args"].get("width")
    if theirs != width:
        if cfg.init != "auto":
            raise SystemExit(f"error: {path} has width {theirs}, the detector width {width}")
        log(f"backbone: random ({path} has width {theirs}, the detector {width})")
        return "random"
    prefix = "features."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.features.load_state_dict(state)
    log(f"backbone: conv1-conv5 from {path}")
    return str(path)


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_config(DetectNetConfig, argv)
    if min(cfg.crop_h, cfg.crop_w) < 64:
        raise SystemExit("error: --crop_h and --crop_w must be at least 64 pixels")
    run = engine.start_run(cfg, "detectnet")
    device, d, width, out, log = run.device, run.d, run.width, run.out, run.log

    try:
        train, val, data_name = load_data(cfg, d)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    train.preload()
    val.preload()  # scored every epoch (held-out loss) and at the end: decode the files once
    classes = train.classes
    n_boxes = sum(len(s.boxes) for s in train.samples)
    log(
        f"data: {data_name}: {len(train)} train images ({n_boxes} boxes) / {len(val)} held out, "
        f"classes {classes}"
    )

    model = DetectNet(num_classes=len(classes), width=width)
    backbone = init_backbone(model, cfg, width, log)
    model, raw = engine.prepare_model(model, device, channels_last=cfg.channels_last, d=d)
    model_args = {"num_classes": len(classes), "width": width}
    train_model = torch.compile(model) if cfg.compile else model
    crop_hw = (cfg.crop_h, cfg.crop_w)
    aug = detection.Augment()
    state = {"rng": np.random.default_rng(0)}  # replaced at each epoch's start

    def train_batch(indices):
        x, t = detection.training_batch(train, indices.tolist(), crop_hw, aug, state["rng"])
        return x.to(device), {k: v.to(device) for k, v in t.items()}

    def val_batch(indices):  # one whole held-out image at its own size
        k = int(indices[0])
        x, factor = detection.inference_image(val.image(k))
        s = val.samples[k]
        grid = (grid_size(x.shape[2]), grid_size(x.shape[3]))
        t = encode_targets(s.boxes / factor, s.labels, grid, len(classes))
        return x.to(device), {k: torch.from_numpy(v)[None].to(device) for k, v in t.items()}

    def loss_fn(output, targets):
        coverage, bboxes = (o.float() for o in output)
        loss, parts = detectnet_loss(coverage, bboxes, targets)
        return loss, parts, None

    steps = len(engine.epoch_batches(len(train), cfg.batch_size, 0, cfg.seed, d))
    steps = min(steps, cfg.max_steps) if cfg.max_steps else steps
    optimizer = torch.optim.AdamW(raw.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.15
    )
    pre = preprocessing_meta()
    meta = {
        "kind": "detector",
        "classes": classes,
        "coco_category_ids": train.cat_ids,
        **{k: pre[k] for k in ("mean", "std", "input_scale", "color")},
        **DetectNet.grid.to_meta(),
        "max_side": MAX_SIDE,
        "threshold": cfg.threshold,
        "cluster_iou": cfg.cluster_iou,
        "trained_on": {"dataset": data_name, "synthetic": cfg.dataset == "synthetic"},
    }
    state_path, start_epoch, history = engine.resume_if_asked(
        cfg.resume, out, raw, optimizer, scheduler, log
    )

    val_batches = [torch.tensor([k]) for k in range(len(val))][: cfg.eval_images or None]
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        batches = engine.epoch_batches(len(train), cfg.batch_size, epoch, cfg.seed, d)[:steps]
        state["rng"] = np.random.default_rng([cfg.seed, epoch, d.rank])
        stats = engine.train_one_epoch(
            train_model,
            batches,
            train_batch,
            loss_fn,
            optimizer,
            scheduler,
            device,
            epoch=epoch + 1,
            d=d,
            channels_last=cfg.channels_last,
            desc="detectnet",
        )
        val_stats = engine.evaluate(
            raw, val_batches, val_batch, loss_fn, device, channels_last=cfg.channels_last
        )
        history.append(
            {
                "epoch": epoch + 1,
                **{f"train_{k}": v for k, v in stats.items()},
                "val_loss": val_stats["loss"],
            }
        )
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {stats['loss']:.3f} (coverage "
            f"{stats['coverage']:.3f}, boxes {stats['bboxes']:.3f}; {stats['images_per_s']:.0f} "
            f"img/s), held-out loss {val_stats['loss']:.3f}"
        )
        if d.is_main:
            engine.save_training_state(
                state_path,
                raw,
                optimizer,
                scheduler,
                epoch=epoch + 1,
                model_name="detectnet",
                model_args=model_args,
                history=history,
                meta=meta,
            )
            engine.write_json(out / "history.json", {"history": history})
            plot_curves(history, out / "curves.png", title=f"DetectNet (width {width})")
    train_seconds = time.perf_counter() - started
    digests = engine.end_run(raw, d)  # other ranks end here; the main one evaluates

    raw = raw.float().to(memory_format=torch.contiguous_format).eval()
    metrics, detections = evaluate_detector(
        raw, val, threshold=cfg.threshold, iou=cfg.cluster_iou, limit=cfg.eval_images
    )
    metrics.update(
        engine.run_metrics(
            run, cfg, train_seconds=train_seconds, digests=digests, dataset=data_name
        ),
        backbone=backbone,
        train_images=len(train),
        held_out_images=metrics["images"],
        epochs=history[-1]["epoch"] if history else 0,
    )
    meta["metrics"] = {k: metrics[k] for k in ("AP", "AP50", "AP75")}
    save_checkpoint(
        out / "checkpoint.pt",
        raw,
        model_name="detectnet",
        model_args=model_args,
        epoch=metrics["epochs"],
        metrics=metrics,
        meta=meta,
    )
    engine.write_json(out / "metrics.json", metrics)
    engine.write_json(out / "detections.json", {"detections": detections})
    for n in range(min(3, len(val))):
        save_png(render_detections(raw, val, n), out / f"detections_{n}.png")
    log(
        f"DetectNet (width {width}) on {data_name}: AP {metrics['AP']:.3f}, AP50 "
        f"{metrics['AP50']:.3f}, AP75 {metrics['AP75']:.3f} over {metrics['images']} held-out "
        f"images; DIGITS precision {metrics['digits']['precision']:.1%} / recall "
        f"{metrics['digits']['recall']:.1%} at IoU 0.7; {train_seconds:.0f} s training on "
        f"{metrics['device']}"
    )
    print(f"artifacts: {out}/")
    return metrics


def plot_curves(history: list[dict], path, title: str = "") -> Path:
    """Loss per epoch (train, held out) and the training loss's two parts."""
    from matplotlib.figure import Figure

    from workshop.plots import save_figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_parts = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "-o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "--o", label="held out")
    ax_parts.plot(epochs, [h["train_coverage"] for h in history], "-o", label="coverage (L2)")
    ax_parts.plot(epochs, [h["train_bboxes"] for h in history], "-o", label="boxes (L1 / size)")
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_parts.set(xlabel="epoch", ylabel="training loss part", yscale="log")
    for ax in (ax_loss, ax_parts):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
