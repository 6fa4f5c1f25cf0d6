"""Module 2's trainer: exact resume after SIGKILL, DDP shards, compile, image folders, messages."""

import json
import math
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from helpers import CUDA_MISSING, assert_stops_with
from PIL import Image

from models.checkpoint import load_checkpoint
from workshop import train_alexnet


def small_args(out, data_dir, *extra):
    return [
        "--synthetic_size=small",
        "--width=0.125",
        "--batch_size=4",
        "--epochs=4",
        "--sliding_check=false",
        "--pointing_scenes=1",
        "--examples=0",
        f"--out_dir={out}",
        f"--data_dir={data_dir}",
        *extra,
    ]


def small_run(python, out, data_dir, *extra):
    return [python, "-m", "workshop.train_alexnet", *small_args(out, data_dir, *extra)]


def train_small(python, out, data_dir, *extra):
    run = subprocess.run(
        small_run(python, out, data_dir, *extra), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def final_weights(out):
    return load_checkpoint(out / "train_state.pt")["state_dict"]


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path, python):
    data = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        small_run(python, tmp_path / "straight", data),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        small_run(python, killed, data),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (killed / "train_state.pt").exists():  # wait for epoch 1's checkpoint
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.1)  # into epoch 2 (an epoch is 24 steps)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "train_state.pt")["epoch"] < 4
    assert not list(killed.glob(".*.tmp"))  # no half-written checkpoint left behind

    run = subprocess.run(
        small_run(python, killed, data, "--resume=true"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "resumed from" in run.stdout, run.stderr[-2000:]
    a, b = final_weights(tmp_path / "straight"), final_weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_torchrun_ranks_train_on_disjoint_shards_and_end_identical(tmp_path, python):
    out, data = tmp_path / "ddp", tmp_path / "data"
    # 3 steps of 16 crops on each of 2 ranks: one whole epoch of the 96 small training crops.
    args = small_args(out, data, "--epochs=1", "--batch_size=16", "--max_steps=3")
    cmd = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*cmd, "-m", "workshop.train_alexnet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    digests = metrics["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    n = len(list((data / "synthetic-small" / "crops" / "train").glob("*/*")))
    shards = [set(s) for s in metrics["rank_sample_indices"]]
    assert [len(s) for s in metrics["rank_sample_indices"]] == [n // 2, n // 2]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(n))
    assert run.stdout.count("epoch 1/1") == 1  # only rank 0 prints


@pytest.mark.gpu
def test_cuda_path_trains_with_bf16_and_channels_last(tmp_path, python):
    out = tmp_path / "cuda"
    train_small(python, out, tmp_path / "data", "--device=cuda", "--epochs=1", "--width=1")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda") and metrics["fcn_vs_classifier_max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_compiled_training_saves_the_plain_model(tmp_path, python):
    out = tmp_path / "compiled"
    train_small(python, out, tmp_path / "data", "--epochs=1", "--max_steps=2", "--compile=true")
    state = final_weights(out)
    assert not any(k.startswith("_orig_mod") for k in state)  # no key-prefix fix ever needed
    assert load_checkpoint(out / "checkpoint.pt")["model_name"] == "alexnet_fcn"


def no_nan(text: str) -> dict:
    """JSON as strict readers see it: NaN and Infinity are not JSON."""

    def refuse(constant):
        raise AssertionError(f"{constant} in a metrics file")

    return json.loads(text, parse_constant=refuse)


def test_an_image_folder_without_scenes_says_so_and_writes_no_nan(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / "pets" / split / cls).mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "pets" / split / cls / f"{k}.png")
    out = tmp_path / "out"
    metrics = train_alexnet.main(
        [
            f"--dataset={tmp_path / 'pets'}",
            f"--data_dir={tmp_path / 'data'}",
            f"--out_dir={out}",
            "--device=cpu",
            "--width=0.125",
            "--batch_size=4",
            "--epochs=1",
            "--max_steps=1",
        ]
    )
    said = capsys.readouterr().out
    assert "pointing game: no scenes with boxes in this data set" in said
    assert "nan" not in said.lower()
    written = no_nan((out / "metrics.json").read_text())
    assert "pointing_accuracy" not in written and written["dataset"] == "pets"
    assert written["val_accuracy"] == metrics["val_accuracy"] and math.isfinite(
        written["val_accuracy"]
    )
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert "pointing_accuracy" not in ckpt["meta"]["metrics"]
    assert ckpt["metrics"]["config"] == written["config"]  # the run's settings travel with it
    assert ckpt["metrics"]["config"]["batch_size"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset=/nonexistent/folder"], "no such image folder"),
        (["--synthetic_size=huge"], "must be full or small"),
        (["--epochs=many"], "--epochs expects int"),
        (["--lr=1e-3", "--colour=red"], "unknown option '--colour=red'"),
        (["--device=tpu"], "unknown device 'tpu'"),
        CUDA_MISSING,
    ],
)
def test_trainer_mistakes_are_messages_not_tracebacks(args, message, tmp_path):
    assert_stops_with(train_alexnet.main, [f"--data_dir={tmp_path}", *args], message)


def test_a_learning_rate_that_diverges_stops_the_run_before_saving(tmp_path):
    args = ["--synthetic_size=small", "--epochs=2", "--width=0.125", "--sliding_check=false"]
    with pytest.raises(SystemExit, match=r"error: training diverged: loss .* \(above 139\)"):
        train_alexnet.main(
            [*args, "--lr=1.0", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'o'}"]
        )
    assert not (tmp_path / "o" / "checkpoint.pt").exists()
