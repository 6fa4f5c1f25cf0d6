"""Exact resume: every RNG's state and the training state survive a save and a load."""

import random

import numpy as np
import torch

from models.mlp import MLP
from workshop import resume


def test_rng_state_round_trip(tmp_path):
    resume.seed_everything(0)
    np.random.normal()  # noqa: NPY002 -- leaves a cached gaussian in the state
    state = resume.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(3))  # noqa: NPY002
    resume.seed_everything(99)
    resume.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.normal(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_training_state_restores_model_optimizer_schedule_and_history(tmp_path):
    def setup():
        model = MLP(input_layer_size=3, hidden_layer_size=2, num_labels=2)
        opt = torch.optim.AdamW(model.parameters(), lr=0.1)
        return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    model, opt, sched = setup()
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    history = [{"epoch": 1, "train_loss": 0.5}]
    path = tmp_path / "train_state.pt"
    resume.save_training_state(
        path, model, opt, sched, epoch=1, model_name="mlp", model_args={}, history=history, meta={}
    )
    after = torch.rand(2)  # the draw a resumed run must repeat

    model2, opt2, sched2 = setup()
    assert resume.resume_if_asked(False, tmp_path, model2, opt2, sched2, print)[1:] == (0, [])
    state_path, epoch, got = resume.resume_if_asked(True, tmp_path, model2, opt2, sched2, print)
    assert (state_path, epoch, got) == (path, 1, history)
    assert torch.equal(model2.hidden.weight, model.hidden.weight)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.05]
    assert torch.equal(torch.rand(2), after)
