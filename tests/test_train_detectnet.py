"""Module 3's data and trainer: COCO subsets, boxes that follow the pixels, a smoke run,
resume after SIGKILL, DDP, clear messages."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from helpers import CUDA_MISSING, assert_stops_with
from PIL import Image

from models.boxes import box_iou, grid_size
from models.checkpoint import build_model, load_checkpoint
from workshop import train_detectnet
from workshop.data import detection


def write_coco(root, images, categories):
    """A COCO file with solid rectangles drawn where its boxes say; returns its path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries, anns = [], []
    for i, (size, boxes) in enumerate(images, start=1):
        arr = np.full((size[1], size[0], 3), 40, np.uint8)
        for cat_id, (x, y, w, h) in boxes:
            arr[int(y) : int(y + h), int(x) : int(x + w)] = 220
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        Image.fromarray(arr).save(root / "images" / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": size[0], "height": size[1]})
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": categories}))
    return path


CATEGORIES = [{"id": 9, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 5, "name": "bird"}]


def test_category_subset_is_remapped_in_coco_id_order(tmp_path):
    path = write_coco(
        tmp_path,
        [
            ((200, 150), [(9, (10, 10, 50, 40)), (5, (100, 50, 60, 60))]),
            ((300, 200), [(2, (20, 30, 80, 60))]),
            ((100, 100), [(5, (10, 10, 30, 30))]),
        ],
        CATEGORIES,
    )
    everything = detection.CocoDetection(path)
    assert everything.classes == ["cat", "bird", "dog"] and everything.cat_ids == [2, 5, 9]
    subset = detection.CocoDetection(path, categories=["dog", "cat"])
    assert subset.classes == ["cat", "dog"] and subset.cat_ids == [2, 9]
    assert len(subset) == 2  # the bird-only image is dropped
    first = subset.samples[0]
    assert first.labels.tolist() == [1] and first.boxes.tolist() == [[10, 10, 60, 50]]
    assert subset.image(1).shape == (3, 200, 300)


def test_bad_coco_input_is_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such COCO annotation file"):
        detection.CocoDetection(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        detection.CocoDetection(tmp_path / "junk.json")
    path = write_coco(tmp_path, [((100, 100), [(9, (10, 10, 30, 30))])], CATEGORIES)
    with pytest.raises(ValueError, match=r"categories \['horse'\] are not in"):
        detection.CocoDetection(path, categories=["horse"])


def bright_box(crop: torch.Tensor) -> np.ndarray:
    """The extent of the bright (220) pixels in a uint8 (3, H, W) crop: x0, y0, x1, y1."""
    ys, xs = np.nonzero(crop[0].numpy() > 150)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


@pytest.mark.parametrize(
    ("scale", "origin", "flip"),
    [(1.0, (0, 0), False), (0.8, (30, 10), False), (1.3, (120, 90), True), (0.6, (-40, -25), True)],
)
def test_boxes_move_with_the_pixels(tmp_path, scale, origin, flip):
    path = write_coco(tmp_path, [((400, 300), [(9, (130.0, 100.0, 90.0, 70.0))])], CATEGORIES)
    data = detection.CocoDetection(path)
    crop, affine = detection.place(data.image(0), (192, 256), scale, origin)
    if flip:
        crop = crop.flip(-1)
    boxes, kept, _ = detection.transform_boxes(data.samples[0].boxes, affine, (192, 256), flip)
    assert kept.tolist() == [0]
    assert np.abs(boxes[0] - bright_box(crop)).max() <= 1.5  # resampling blurs one pixel


def test_cut_objects_become_dont_care_regions():
    boxes = np.array([[0.0, 0.0, 100.0, 100.0], [150.0, 150.0, 250.0, 250.0]])
    # The window starts at (90, 90): the first box is 1 % visible, the second whole.
    kept_boxes, kept, ignored = detection.transform_boxes(
        boxes, (1, 1, -90, -90), (200, 200), False
    )
    assert kept.tolist() == [1] and ignored.tolist() == [[0, 0, 10, 10]]


def test_training_batch_targets_match_the_crops(tmp_path):
    path = write_coco(
        tmp_path,
        [((512, 384), [(9, (100.0, 80.0, 120.0, 110.0)), (2, (300, 200, 90, 90))])],
        CATEGORIES,
    )
    data = detection.CocoDetection(path)
    x, t = detection.training_batch(
        data, [0, 0, 0], (192, 256), detection.Augment(), np.random.default_rng(0)
    )
    assert x.shape == (3, 3, 192, 256) and x.is_contiguous(memory_format=torch.channels_last)
    assert t["coverage"].shape == (3, 3, grid_size(192), grid_size(256))  # every category
    assert t["bboxes"].shape == (3, 4, grid_size(192), grid_size(256))
    assert torch.isfinite(x).all() and x.abs().max() < 5  # normalized pixels


def smoke_args(out, data_dir, *extra):
    return [
        "-m",
        "workshop.train_detectnet",
        "--synthetic_size=small",
        "--width=0.125",
        "--init=none",
        "--batch_size=4",
        "--crop_h=160",
        "--crop_w=224",
        "--eval_images=2",
        f"--out_dir={out}",
        f"--data_dir={data_dir}",
        *extra,
    ]


def run_trainer(python, *args, env=None, timeout=300):
    run = subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.mark.slow
def test_smoke_run_writes_every_artifact(tmp_path, python):
    out = tmp_path / "det"
    run_trainer(python, *smoke_args(out, tmp_path / "data", "--epochs=1", "--max_steps=2"))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("AP", "AP50", "AP75", "per_class_AP", "train_seconds", "device", "digits"):
        assert key in metrics
    assert set(metrics["per_class_AP"]) == {"star", "ring", "cross"}
    assert 0 <= metrics["AP"] <= metrics["AP50"] <= 1
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["meta"]["kind"] == "detector" and ckpt["meta"]["classes"] == [
        "star",
        "ring",
        "cross",
    ]
    model = build_model(ckpt)
    with torch.no_grad():
        cov, box = model(torch.zeros(1, 3, 240, 320))
    assert cov.shape == (1, 3, grid_size(240), grid_size(320))
    for name in ("detections_0.png", "curves.png", "history.json", "detections.json"):
        assert (out / name).is_file()


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path, python):
    data = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ("--epochs=3", "--max_steps=4")
    run_trainer(python, *smoke_args(tmp_path / "straight", data, *args), env=env)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [python, *smoke_args(killed, data, *args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (killed / "train_state.pt").exists():  # wait for epoch 1's checkpoint
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "train_state.pt")["epoch"] < 3
    run = run_trainer(python, *smoke_args(killed, data, *args, "--resume=true"), env=env)
    assert "resumed from" in run.stdout
    a = load_checkpoint(tmp_path / "straight" / "train_state.pt")["state_dict"]
    b = load_checkpoint(killed / "train_state.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_torchrun_ranks_train_on_disjoint_shards_and_end_identical(tmp_path, python):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = run_trainer(
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        # 2 steps of 4 scenes on each of 2 ranks: one whole epoch of the 16 small scenes.
        *smoke_args(out, tmp_path / "data", "--epochs=1", "--max_steps=2"),
        env=env,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    digests = metrics["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    n = metrics["train_images"]
    shards = [set(s) for s in metrics["rank_sample_indices"]]
    assert n == 16 and [len(s) for s in metrics["rank_sample_indices"]] == [8, 8]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(n))
    assert run.stdout.count("epoch 1/1") == 1  # only rank 0 prints


def test_a_trained_detector_finds_the_boxes_it_was_shown(tmp_path):
    """Overfit one image: decode then recovers its boxes (the whole loop, end to end)."""
    from models.detectnet import DetectNet, detectnet_loss
    from workshop.detect import detect

    torch.manual_seed(0)
    path = write_coco(
        tmp_path,
        [((256, 192), [(9, (40.0, 30.0, 80.0, 70.0)), (2, (150, 90, 70, 70))])],
        CATEGORIES[:2],
    )
    data = detection.CocoDetection(path)
    model = DetectNet(num_classes=2, width=0.125)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    aug = detection.Augment(scale=(1.0, 1.0), flip=0, brightness=0, contrast=0, gain=0)
    x, t = detection.training_batch(data, [0], (192, 256), aug, np.random.default_rng(0))
    for _ in range(300):
        loss, _ = detectnet_loss(*model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    boxes, scores, labels = detect(model, data.image(0), threshold=0.5)
    truth = data.samples[0]
    assert sorted(labels.tolist()) == sorted(truth.labels.tolist())
    assert box_iou(truth.boxes, boxes).max(1).min() > 0.7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset=/nonexistent/instances.json"], "no such COCO annotation file"),
        (["--synthetic_size=huge"], "must be full or small"),
        (["--crop_h=20"], "at least 64 pixels"),
        (["--init=/nonexistent/alexnet.pt"], "no such checkpoint"),
        (["--device=tpu"], "unknown device 'tpu'"),
        CUDA_MISSING,
    ],
)
def test_trainer_mistakes_are_messages_not_tracebacks(args, message, tmp_path):
    assert_stops_with(
        train_detectnet.main, [f"--data_dir={tmp_path}", "--synthetic_size=small", *args], message
    )


def test_a_missing_image_file_is_a_message_not_a_traceback(tmp_path):
    boxes = [(9, (10, 10, 30, 30))]
    path = write_coco(tmp_path, [((100, 80), boxes)] * 4, CATEGORIES)
    (tmp_path / "images" / "3.png").unlink()
    with pytest.raises(SystemExit) as stop:
        train_detectnet.main(
            [f"--dataset={path}", f"--out_dir={tmp_path / 'out'}", "--device=cpu", "--init=none"]
        )
    assert isinstance(stop.value.code, str) and stop.value.code.startswith("error: ")
    assert "3.png" in stop.value.code and "\n" not in stop.value.code  # one line, names the file
    assert not (tmp_path / "out").exists()  # stopped before training


@pytest.mark.gpu
def test_cuda_path_trains_with_bf16_and_channels_last(tmp_path, python):
    out = tmp_path / "cuda"
    run_trainer(
        python,
        *smoke_args(
            out, tmp_path / "data", "--device=cuda", "--epochs=1", "--max_steps=2", "--width=1"
        ),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda") and 0 <= metrics["AP"] <= 1


def test_ground_truth_holds_only_the_sets_images_and_categories(tmp_path):
    """Scoring a subset against the whole file would count other images' boxes as misses."""
    path = write_coco(
        tmp_path,
        [
            ((200, 150), [(9, (10, 10, 50, 40)), (5, (100, 50, 60, 60))]),
            ((300, 200), [(2, (20, 30, 80, 60))]),
            ((100, 100), [(9, (10, 10, 30, 30))]),
        ],
        CATEGORIES,
    )
    dogs = detection.CocoDetection(path, categories=["dog"])
    gt = dogs.ground_truth()
    assert sorted(gt.getImgIds()) == [1, 3] and gt.getCatIds() == [9]
    assert len(gt.getAnnIds()) == 2  # the bird in image 1 is not a dog to find
    assert dogs.ground_truth(1).getImgIds() == [1]
