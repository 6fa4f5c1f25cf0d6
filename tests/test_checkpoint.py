"""The one checkpoint format: atomic writes, weights-only loading, rebuilt from the file alone."""

import numpy as np
import pytest
import torch

from models.checkpoint import build_model, load_checkpoint, save_checkpoint
from models.mlp import rand_initialize_weights, to_module


def test_round_trip_rebuilds_the_same_model(tmp_path):
    module = to_module(
        rand_initialize_weights(400, 25, rng=0), rand_initialize_weights(25, 10, rng=1)
    )
    args = dict(input_layer_size=400, hidden_layer_size=25, num_labels=10)
    path = save_checkpoint(
        tmp_path / "mlp" / "checkpoint.pt",
        module,
        model_name="mlp",
        model_args=args,
        epoch=7,
        metrics={"test_accuracy": 0.5},
        meta={"classes": list("0123456789")},
    )
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary left
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 7 and ckpt["meta"]["classes"][0] == "0"
    x = torch.rand(5, 400)
    with torch.no_grad():
        np.testing.assert_array_equal(build_model(ckpt)(x).numpy(), module(x).numpy())


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a workshop checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown model"):
        save_checkpoint(
            tmp_path / "x.pt", torch.nn.Linear(1, 1), model_name="resnet", model_args={}
        )
