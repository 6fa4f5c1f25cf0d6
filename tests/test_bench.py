"""The benchmark sections run end to end on a small exported model (timings not asserted)."""

import json

from test_export import make_checkpoints

from benchmarks import common, fcn_latency


def test_fcn_latency_section_times_torch_and_onnxruntime(tmp_path, monkeypatch):
    make_checkpoints(tmp_path / "artifacts")
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "artifacts"))
    result = fcn_latency.run(sizes=((64, 80), (227, 301)), repeats=1)
    assert [r["size"] for r in result["rows"]] == ["80x64", "301x227"]
    for row in result["rows"]:
        assert row["torch_eager"]["median_s"] > 0 and row["onnxruntime"]["median_s"] > 0
    assert "| 301x227 |" in fcn_latency.table(result)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    path = common.write_results({"environment": common.environment(), "fcn_latency": result})
    assert json.loads(path.read_text())["fcn_latency"]["rows"][0]["size"] == "80x64"


def test_fcn_latency_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "nothing"))
    assert "make train-alexnet" in fcn_latency.run()["skipped"]
