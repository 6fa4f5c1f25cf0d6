"""The training engine: sharding, RNG state, loud failures, exact resume after SIGKILL, DDP."""

import json
import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from workshop import engine


def test_epoch_batches_shard_and_reshuffle():
    two = [engine.epoch_batches(10, 3, epoch=1, seed=0, d=engine.Dist(r, 2)) for r in (0, 1)]
    seen = torch.cat([torch.cat(b) for b in two])
    assert sorted(seen.tolist())[:10] == list(range(10)) and len(seen) == 10
    assert len(two[0]) == len(two[1])
    again = engine.epoch_batches(10, 3, epoch=1, seed=0, d=engine.Dist(0, 2))
    assert all(torch.equal(a, b) for a, b in zip(two[0], again))
    other = engine.epoch_batches(10, 3, epoch=2, seed=0, d=engine.Dist(0, 2))
    assert not all(torch.equal(a, b) for a, b in zip(two[0], other))


def test_rng_state_round_trip(tmp_path):
    engine.seed_everything(0)
    np.random.normal()  # noqa: NPY002 -- leaves a cached gaussian in the state
    state = engine.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(3))  # noqa: NPY002
    engine.seed_everything(99)
    engine.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.normal(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_non_finite_loss_stops_loudly():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def get(idx):
        return torch.full((len(idx), 2), float("nan")), torch.zeros(len(idx), dtype=torch.long)

    def loss_fn(out, y):
        loss = torch.nn.functional.cross_entropy(out, y)
        return loss, {"cross_entropy": loss}, 0

    with pytest.raises(engine.NonFiniteLoss, match="cross_entropy"):
        engine.train_one_epoch(
            model,
            [torch.arange(4)],
            get,
            loss_fn,
            opt,
            None,
            torch.device("cpu"),
            epoch=1,
            d=engine.Dist(),
        )


def small_run(python, out, data_dir, *extra):
    return [
        python,
        "-m",
        "workshop.train_alexnet",
        "--synthetic_size=small",
        "--width=0.125",
        "--batch_size=4",
        "--epochs=4",
        "--sliding_check=false",
        "--pointing_scenes=1",
        f"--out_dir={out}",
        f"--data_dir={data_dir}",
        *extra,
    ]


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
def test_torchrun_two_ranks_end_identical(tmp_path, python):
    out = tmp_path / "ddp"
    cmd = [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *small_run(python, out, tmp_path / "data", "--epochs=1", "--max_steps=3")[1:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    digests = metrics["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset=/nonexistent/folder"], "no such image folder"),
        (["--synthetic_size=huge"], "must be full or small"),
        (["--epochs=many"], "--epochs expects int"),
        (["--lr=1e-3", "--colour=red"], "unknown option '--colour=red'"),
    ],
)
def test_trainer_mistakes_are_messages_not_tracebacks(python, args, message):
    run = subprocess.run(
        [python, "-m", "workshop.train_alexnet", *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0 and message in run.stderr
    assert "Traceback" not in run.stderr
