"""The training loops: sharding, loud failures, and the shared fit loop with its files."""

import json
from types import SimpleNamespace

import pytest
import torch

from models.mlp import MLP
from workshop import engine, runs
from workshop.distributed import Dist
from workshop.plots import plot_history
from workshop.resume import seed_everything


def test_epoch_batches_shard_and_reshuffle():
    two = [engine.epoch_batches(10, 3, epoch=1, seed=0, d=Dist(r, 2)) for r in (0, 1)]
    seen = torch.cat([torch.cat(b) for b in two])
    assert sorted(seen.tolist())[:10] == list(range(10)) and len(seen) == 10
    assert len(two[0]) == len(two[1])
    again = engine.epoch_batches(10, 3, epoch=1, seed=0, d=Dist(0, 2))
    assert all(torch.equal(a, b) for a, b in zip(two[0], again))
    other = engine.epoch_batches(10, 3, epoch=2, seed=0, d=Dist(0, 2))
    assert not all(torch.equal(a, b) for a, b in zip(two[0], other))


def test_a_loss_above_the_limit_stops_loudly():
    torch.manual_seed(0)  # the loss, 1000 plus a cross-entropy, is printed to 4 digits
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def get(idx):
        return torch.ones(len(idx), 2), torch.zeros(len(idx), dtype=torch.long)

    def loss_fn(out, y):
        loss = torch.nn.functional.cross_entropy(out, y) + 1000.0  # finite, far too large
        return loss, {"cross_entropy": loss}, 0

    kwargs = dict(epoch=3, d=Dist())
    args = (model, [torch.arange(4)], get, loss_fn, opt, None, torch.device("cpu"))
    engine.train_one_epoch(*args, **kwargs)  # no limit: trains on
    with pytest.raises(
        engine.NonFiniteLoss,
        match=r"loss 1000 \(above 139\) at epoch 3: parts {.cross_entropy.: 1000\.\d+}",
    ):
        engine.train_one_epoch(*args, **kwargs, loss_limit=139.0)


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
            d=Dist(),
        )


X = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
Y = (X[:, 0] > 0).long()


class Killed(Exception):
    pass


def killed_after(epochs: int):
    """A plot step that ends the run once ``epochs`` epochs are saved (as a SIGKILL would)."""

    def plot(history, path):
        plot_history(history, path)
        if len(history) == epochs:
            raise Killed

    return plot


def tiny_fit(out, epochs: int, resume: bool = False, seed_before: int = 0, plot=plot_history):
    """engine.fit on a 4-8-2 MLP over 40 noisy points (noise from the global RNG)."""
    cfg = SimpleNamespace(
        epochs=epochs,
        batch_size=8,
        seed=0,
        max_steps=0,
        lr=0.05,
        weight_decay=0.0,
        resume=resume,
        channels_last=False,
    )
    run = runs.Run(torch.device("cpu"), Dist(), 1.0, out, lambda *a: None)
    torch.manual_seed(0)
    net = MLP(input_layer_size=4, hidden_layer_size=8, num_labels=2)
    model, raw = engine.prepare_model(net, run.device, channels_last=False, d=run.d)
    steps = engine.steps_per_epoch(len(X), cfg, run.d)
    optimizer, scheduler = engine.build_optimizer(raw, cfg, steps, pct_start=0.2)
    seed_everything(seed_before)  # what a resumed run starts from must not matter

    def loss_fn(logits, y):
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss, {"cross_entropy": loss}, (logits.argmax(1) == y).sum().item()

    job = engine.Job(
        model_name="mlp",
        model_args={"input_layer_size": 4, "hidden_layer_size": 8, "num_labels": 2},
        meta={"kind": "test"},
        n_train=len(X),
        train_batch=lambda epoch: lambda idx: (X[idx] + 0.3 * torch.randn(len(idx), 4), Y[idx]),
        val_batch=lambda idx: (X[idx], Y[idx]),
        val_batches=[torch.arange(0, 20), torch.arange(20, 40)],
        loss_fn=loss_fn,
        report=lambda stats, val: f"loss {stats['loss']:.3f}",
        plot=plot,
    )
    return engine.fit(run, cfg, model, raw, optimizer, scheduler, job), raw


def test_fit_records_every_epoch_and_resumes_exactly(tmp_path):
    straight, raw = tiny_fit(tmp_path / "straight", epochs=3)
    assert [h["epoch"] for h in straight.history] == [1, 2, 3]
    first = straight.history[0]
    assert {"train_loss", "train_accuracy", "train_cross_entropy", "val_loss", "val_accuracy"} <= (
        set(first)
    )
    assert sorted(straight.samples) == list(range(40))  # the last epoch saw every sample once
    saved = json.loads((tmp_path / "straight" / "history.json").read_text())["history"]
    assert [h["val_loss"] for h in saved] == [h["val_loss"] for h in straight.history]
    assert (tmp_path / "straight" / "curves.png").stat().st_size > 0

    with pytest.raises(Killed):
        tiny_fit(tmp_path / "killed", epochs=3, plot=killed_after(1))
    resumed, raw2 = tiny_fit(tmp_path / "killed", epochs=3, resume=True, seed_before=7)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a, b = raw.state_dict(), raw2.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[2]["val_loss"] == straight.history[2]["val_loss"]
