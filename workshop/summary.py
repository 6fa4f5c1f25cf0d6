"""Print what the trained models measured, from artifacts/<model>/metrics.json."""

from __future__ import annotations

import json

from workshop.artifacts import artifacts_dir


def _pct(x) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "-"


def summary() -> str:
    lines = ["", "| model | data | result | training | device |", "| --- | --- | --- | --- | --- |"]
    mlp = artifacts_dir("mlp") / "metrics.json"
    if mlp.is_file():
        m = json.loads(mlp.read_text())
        lines.append(
            f"| MLP 400-25-10 | {m['dataset']} | train {_pct(m['train_accuracy'])}, test "
            f"{_pct(m['test_accuracy'])} | {m['train_seconds']:.1f} s | {m['device']} |"
        )
        for name, b in m.get("baselines", {}).items():
            lines.append(
                f"| {name} (baseline) | {m['dataset']} | test {_pct(b['test_accuracy'])} "
                f"| {b['train_seconds']:.1f} s | cpu |"
            )
    alex = artifacts_dir("alexnet") / "metrics.json"
    if alex.is_file():
        m = json.loads(alex.read_text())
        sw = m.get("sliding_window", {}).get("sliding_window", {})
        extra = f", FCN {sw['speedup_of_fcn']:.0f}x faster than the sliding window" if sw else ""
        lines.append(
            f"| AlexNet FCN (width {m['width']}) | {m['dataset']} | "
            f"crops {_pct(m['val_accuracy'])}, pointing {_pct(m.get('pointing_accuracy'))}"
            f"{extra} | {m['train_seconds']:.0f} s | {m['device']} |"
        )
    det = artifacts_dir("detectnet") / "metrics.json"
    if det.is_file():
        m = json.loads(det.read_text())
        lines.append(
            f"| DetectNet (width {m['width']}) | {m['dataset']} | AP {m['AP']:.3f}, AP50 "
            f"{m['AP50']:.3f}, AP75 {m['AP75']:.3f} (COCO, {m['held_out_images']} held-out "
            f"images) | {m['train_seconds']:.0f} s | {m['device']} |"
        )
    if len(lines) == 3:
        return "no trained models yet: run `make demo`"
    return "\n".join(lines) + f"\n\nartifacts: {artifacts_dir('').resolve()}/"


if __name__ == "__main__":
    print(summary())
