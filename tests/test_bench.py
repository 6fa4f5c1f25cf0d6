"""The benchmark sections run end to end on small models (timings are reported, not asserted)."""

import json

import pytest

from benchmarks import common, fcn_latency, mlp_bench, training


def test_inference_section_times_torch_and_onnxruntime(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS", str(artifacts))
    result = fcn_latency.run(sizes=((64, 80), (227, 301)), repeats=1)
    assert [(r["model"], r["size"]) for r in result["rows"]] == [
        ("fcn", "80x64"),
        ("fcn", "301x227"),
        ("detector", "1920x1080"),
    ]
    for row in result["rows"]:
        assert row["torch_eager"]["median_s"] > 0 and row["onnxruntime"]["median_s"] > 0
        assert row["gflop"] > 0 and row["ort_vs_gemm"] > 0
    assert "| fcn | 301x227 |" in fcn_latency.table(result)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    path = common.write_results({"environment": common.environment(), "inference": result})
    assert json.loads(path.read_text())["inference"]["rows"][0]["size"] == "80x64"


def test_flop_count_matches_the_formula():
    import torch
    from torch import nn

    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    expected = 2 * (8 * 16 * 16 * 3 * 9 + 10 * 8 * 16 * 16)
    assert fcn_latency.count_flops(conv, torch.zeros(1, 3, 16, 16)) == expected


def test_inference_section_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "nothing"))
    assert "make train-alexnet" in fcn_latency.run()["skipped"]


def test_training_section_measures_both_paths():
    result = training.run(width=0.125, batch=4, steps=1, compile=False)
    assert result["fp32_eager_reference"] > 0 and result["engine_channels_last"] > 0
    assert "engine / reference" in training.table(result)


def test_mlp_cost_gradient_section_runs():
    result = mlp_bench.cost_gradient(repeats=1)
    assert result["vectorized_vs_loop"] > 1
    assert set(result["rows"]) >= {"loop (numpy, per example)", "vectorized (numpy)"}


@pytest.mark.slow
def test_real_photo_section_scores_both_variants_on_the_real_scenes():
    from benchmarks import realdata
    from benchmarks.realsample import find_realsample

    if find_realsample() is None:
        pytest.skip("no real-photo sample (benchmarks/realsample.py says where it looks)")
    tiny = ("--epochs=1", "--max_steps=2", "--width=0.125", "--batch_size=16")
    result = realdata.run(pets=20, train_args=tiny)
    two, three = result["two classes"], result["three classes"]
    assert two["classes"] == ["cat", "dog"] and three["classes"] == ["background", "cat", "dog"]
    assert two["photos"]["cat"] == three["photos"]["cat"] == 20
    # every cell of a two-class map is cat or dog: the whole map says "animal"
    assert two["animal_share_of_map"] == 1.0
    coco = json.loads((find_realsample() / "coco128" / "instances.json").read_text())
    animal = {c["id"] for c in coco["categories"] if c["name"] in ("cat", "dog")}
    pairs = {
        (a["image_id"], a["category_id"]) for a in coco["annotations"] if a["category_id"] in animal
    }
    for r in (two, three):
        assert r["pointing_trials"] == len(pairs)  # each (photo, animal) of the sample, once
        assert 0 <= r["pointing_accuracy"] <= 1 and r["cells"] > 0
    assert "| three classes |" in realdata.table(result)
