"""The one device decision and what the ranks report at the end of a run."""

import pytest
import torch

from workshop import distributed
from workshop.distributed import Dist


def test_auto_picks_a_device_and_cpu_is_always_there():
    assert distributed.pick_device("cpu") == torch.device("cpu")
    assert distributed.pick_device().type in ("cuda", "mps", "cpu")
    assert distributed.describe_device(torch.device("cpu")).startswith("cpu, ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_cuda_is_a_value_error_with_a_message():
    with pytest.raises(ValueError, match="CUDA is not available here"):
        distributed.pick_device("cuda")


def test_an_unknown_device_is_a_value_error_with_a_message():
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        distributed.pick_device("gpu0")


def test_weights_digest_tells_identical_weights_apart_from_different_ones():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert distributed.weights_digest(a) == distributed.weights_digest(b)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert distributed.weights_digest(a) != distributed.weights_digest(b)


def test_a_single_process_reports_its_digest_and_no_shards():
    model = torch.nn.Linear(3, 2)
    report = distributed.end_run(model, Dist(), samples=[0, 1, 2])
    assert report == {"rank_weight_digests": [distributed.weights_digest(model)]}
