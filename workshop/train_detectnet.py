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
detections_*.png (held-out scenes, ground truth dashed in white), and records the run
(every setting, each epoch's numbers, the final ones) in artifacts/mlflow.db (`make runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from models.boxes import encode_targets, grid_size
from models.checkpoint import load_checkpoint
from models.detectnet import DetectNet, detectnet_loss
from models.heatmap import save_png
from models.imageio import MAX_SIDE
from workshop import engine, runs
from workshop.artifacts import artifacts_dir, write_json
from workshop.cli import parse_config
from workshop.data import detection
from workshop.data.images import preprocessing_meta
from workshop.data.prepare import resolve
from workshop.data.synthetic_set import synthetic_data
from workshop.detect import CLUSTER_IOU, THRESHOLD, evaluate_detector, render_detections
from workshop.distributed import Dist, end_run
from workshop.plots import plot_detector_history
from workshop.tracking import data_params

# The one-cycle schedule's warm-up: the share of all steps spent rising to the peak lr
# (the New run page's LR preview reads it from here).
PCT_START = 0.15
# The settings with a fixed set of values (the New run page offers them as a list); init is
# free: auto, none or a checkpoint's path.
CHOICES = {"synthetic_size": ["full", "small"], "device": ["auto", "cpu", "cuda", "mps"]}


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


def load_data(cfg: DetectNetConfig, d: Dist):
    """(train, val) CocoDetection, their images decoded once, a short name for the data set
    and its folder.

    ValueError (BadImage included) or FileNotFoundError when a file is missing or unreadable.
    """
    train, val, name, folder = find_data(cfg, d)
    train.preload()
    val.preload()  # scored every epoch (held-out loss) and at the end: decode the files once
    return train, val, name, folder


def find_data(cfg: DetectNetConfig, d: Dist):
    """(train, val) CocoDetection, a short name for the data set and its folder."""
    categories = [c.strip() for c in cfg.categories.split(",") if c.strip()] or None
    if cfg.dataset == "synthetic":
        root = synthetic_data(cfg, d)
        scenes = root / "scenes"
        train = detection.CocoDetection(scenes / "train" / "annotations.json", None, categories)
        val = detection.CocoDetection(scenes / "val" / "annotations.json", None, categories)
        return train, val, root.name, root
    if cfg.dataset == "coco":  # prepared by `make data DATASET=coco CATEGORIES=...`
        root = resolve("coco", cfg.data_dir, categories)
        train = detection.CocoDetection(root / "train" / "annotations.json", None, categories)
        val = detection.CocoDetection(root / "val" / "annotations.json", None, categories)
        return train, val, root.name, root
    train = detection.CocoDetection(cfg.dataset, cfg.images or None, categories)
    if cfg.val_dataset:
        val = detection.CocoDetection(cfg.val_dataset, cfg.val_images or None, categories)
    else:
        train, val = train.split(0.15, seed=cfg.seed)
    return train, val, Path(cfg.dataset).stem, Path(cfg.dataset).parent


def init_backbone(model: DetectNet, cfg: DetectNetConfig, width: float, log) -> str:
    """Copy module 2's conv1-conv5 into the detector; returns where the backbone came from."""
    if cfg.init == "none":
        return "random"
    path = Path(cfg.init) if cfg.init != "auto" else artifacts_dir("alexnet") / "checkpoint.pt"
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


def scene_batches(train, val, cfg: DetectNetConfig, run: runs.Run):
    """(epoch -> get_batch for training, get_batch for held-out images), on the device.

    Training batches are augmented crops with their encoded targets, drawn from an RNG fixed
    by (seed, epoch, rank); a held-out batch is one whole image at its own size.
    """
    device, crop_hw, aug = run.device, (cfg.crop_h, cfg.crop_w), detection.Augment()

    def for_epoch(epoch: int):
        rng = np.random.default_rng([cfg.seed, epoch, run.d.rank])

        def get(indices):
            x, t = detection.training_batch(train, indices.tolist(), crop_hw, aug, rng)
            return x.to(device), {k: v.to(device) for k, v in t.items()}

        return get

    def val_batch(indices):
        k = int(indices[0])
        x, factor = detection.inference_image(val.image(k))
        s = val.samples[k]
        grid = (grid_size(x.shape[2]), grid_size(x.shape[3]))
        t = encode_targets(
            s.boxes / factor, s.labels, grid, len(train.classes), ignore=s.crowd / factor
        )
        return x.to(device), {k: torch.from_numpy(v)[None].to(device) for k, v in t.items()}

    return for_epoch, val_batch


def coverage_and_boxes(output, targets):
    """The loop's loss: (loss, its parts, None: accuracy means nothing here)."""
    coverage, bboxes = (o.float() for o in output)
    loss, parts = detectnet_loss(coverage, bboxes, targets)
    return loss, parts, None


def epoch_report(stats: dict, val: dict) -> str:
    return (
        f"train loss {stats['loss']:.3f} (coverage {stats['coverage']:.3f}, boxes "
        f"{stats['bboxes']:.3f}; {stats['images_per_s']:.0f} img/s), held-out loss "
        f"{val['loss']:.3f}"
    )


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_config(DetectNetConfig, argv)
    if min(cfg.crop_h, cfg.crop_w) < 64:
        raise SystemExit("error: --crop_h and --crop_w must be at least 64 pixels")
    with runs.start_run(cfg, "detectnet") as run:  # its record ends FINISHED, FAILED or KILLED
        return train_and_score(cfg, run)


def train_and_score(cfg: DetectNetConfig, run: runs.Run) -> dict:
    device, d, width, out, log = run.device, run.d, run.width, run.out, run.log
    try:
        train, val, data_name, folder = load_data(cfg, d)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    classes = train.classes
    n_boxes = sum(len(s.boxes) for s in train.samples)
    log(
        f"data: {data_name}: {len(train)} train images ({n_boxes} boxes) / {len(val)} held out, "
        f"classes {classes}"
    )
    counts = {
        "train_images": len(train),
        "val_images": len(val),
        "classes": classes,
        "train_boxes": n_boxes,
        "crowd_regions": sum(len(s.crowd) for s in (*train.samples, *val.samples)),
    }
    run.tracker.log_params(data_params(data_name, counts, folder))
    train_batch, val_batch = scene_batches(train, val, cfg, run)

    model = DetectNet(num_classes=len(classes), width=width)
    backbone = init_backbone(model, cfg, width, log)
    model, raw = engine.prepare_model(
        model, device, channels_last=cfg.channels_last, d=d, compile=cfg.compile
    )
    model_args = {"num_classes": len(classes), "width": width}
    steps = engine.steps_per_epoch(len(train), cfg, d)
    optimizer, scheduler = engine.build_optimizer(raw, cfg, steps, pct_start=PCT_START)
    pre = preprocessing_meta()
    meta = {
        "kind": "detector",
        **train.meta(),  # classes and their COCO category ids
        **{k: pre[k] for k in ("mean", "std", "input_scale", "color")},
        **DetectNet.grid.to_meta(),
        "max_side": MAX_SIDE,
        "threshold": cfg.threshold,
        "cluster_iou": cfg.cluster_iou,
        "trained_on": {"dataset": data_name, "synthetic": cfg.dataset == "synthetic"},
    }
    job = engine.Job(
        model_name="detectnet",
        model_args=model_args,
        meta=meta,
        n_train=len(train),
        train_batch=train_batch,
        val_batch=val_batch,
        val_batches=[torch.tensor([k]) for k in range(len(val))][: cfg.eval_images or None],
        loss_fn=coverage_and_boxes,
        report=epoch_report,
        plot=partial(plot_detector_history, title=f"DetectNet (width {width})"),
    )
    fitted = engine.fit(run, cfg, model, raw, optimizer, scheduler, job)
    ranks = end_run(raw, d, fitted.samples)  # other ranks end here; the main one evaluates

    about = runs.run_metrics(
        run, cfg, train_seconds=fitted.train_seconds, ranks=ranks, dataset=data_name
    )
    about.update(
        backbone=backbone,
        train_images=len(train),
        epochs=fitted.history[-1]["epoch"] if fitted.history else 0,
    )
    metrics = finish(raw, val, cfg, meta, model_args, run, about)
    log(
        f"DetectNet (width {width}) on {data_name}: AP {metrics['AP']:.3f}, AP50 "
        f"{metrics['AP50']:.3f}, AP75 {metrics['AP75']:.3f} over {metrics['images']} held-out "
        f"images; DIGITS precision {metrics['digits']['precision']:.1%} / recall "
        f"{metrics['digits']['recall']:.1%} at IoU 0.7; {fitted.train_seconds:.0f} s training on "
        f"{metrics['device']}"
    )
    print(f"artifacts: {out}/")
    return metrics


def finish(raw, val, cfg, meta, model_args, run: runs.Run, about: dict) -> dict:
    """Score the held-out images with pycocotools; save the checkpoint, metrics.json,
    detections.json and detections_<n>.png, record the final metrics. ``about``: how the
    run went, for metrics.json."""
    out = run.out
    raw = raw.float().to(memory_format=torch.contiguous_format).eval()
    metrics, detections = evaluate_detector(
        raw, val, threshold=cfg.threshold, iou=cfg.cluster_iou, limit=cfg.eval_images
    )
    metrics.update(about, held_out_images=metrics["images"])
    runs.save_trained(
        run,
        raw,
        model_name="detectnet",
        model_args=model_args,
        meta=meta,
        metrics=metrics,
        headline=("AP", "AP50", "AP75"),
        final=("per_class_AP", "digits", "train_seconds"),
    )
    write_json(out / "detections.json", {"detections": detections})
    for n in range(min(3, len(val))):
        save_png(render_detections(raw, val, n), out / f"detections_{n}.png")
    return metrics


if __name__ == "__main__":
    main()
