"""The DIGITS pages Runs, New run / Clone, Job and Compare, run by Streamlit's AppTest.

Each test has its own MLflow store in tmp_path ($ARTIFACTS), filled through the tracking
module and MLflow's client with known params and metrics (or by a real tiny training job),
and opens the pages through the app (streamlit_app/app.py's navigation).
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib
import math
import time
from pathlib import Path

import pytest
import torch
from mlflow.entities import Metric
from streamlit.testing.v1 import AppTest

from streamlit_app import runs_view as view
from workshop import jobs, tracking, train_mlp
from workshop.data import catalog

PAGES = Path(view.PAGES)
# The app's navigation (streamlit_app/app.py's pages, in its order, at its URL paths) from a
# script outside streamlit_app/: AppTest forgets st.navigation before every run, and with a
# pages/ folder beside the main script each run would start in Streamlit's legacy mode, where
# app.through_navigation reruns it and a button click is lost.
NAV = """
import streamlit as st
from streamlit_app import app
st.navigation([
    st.Page(str(app.HERE / "pages" / file), title=title, url_path=url, default=k == 0)
    for k, (file, title, _, url) in enumerate(app.shown_pages())
]).run()
"""
TINY_ALEXNET = {"synthetic_size": "small", "epochs": 1, "max_steps": 1, "width": 0.25}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> bytes:
    """A new store's file, made once: MLflow's schema migrations take seconds per store."""
    root = tmp_path_factory.mktemp("empty-store")
    tracking.client(root)
    return tracking.store_path(root).read_bytes()


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store):
    """An empty store folder as $ARTIFACTS (the pages and the jobs read it from there), and
    its data/ (nothing prepared) as $DATA_DIR."""
    root = tmp_path / "artifacts"
    root.mkdir()
    tracking.store_path(root).write_bytes(empty_store)
    monkeypatch.setenv("ARTIFACTS", str(root))
    monkeypatch.setenv("DATA_DIR", str(root / "data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return root


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """A data folder holding the small synthetic set (crops and scenes), generated once."""
    root = tmp_path_factory.mktemp("data")
    catalog.generate_synthetic(root, "synthetic-small")
    return root


def record(
    root: Path,
    module: str,
    settings: dict,
    history: dict | None = None,
    *,
    final: dict | None = None,
    status: str = "FINISHED",
    log: str = "",
) -> str:
    """A run as a trainer leaves it: every config field as a param, per-epoch metrics
    (name -> values for epochs 1..n), final metrics, train.log in its out_dir."""
    cfg = dataclasses.asdict(jobs.config_class(module)(**settings))
    out = root / f"{module}-{len(list(root.glob(f'{module}-*')))}"
    out.mkdir()
    cfg["out_dir"] = str(out)
    params = {**cfg, "data.name": f"{cfg['dataset']}-set", "data.train_images": 640}
    run_id = tracking.create_run(module, params, {"out_dir": str(out)}, status="RUNNING", root=root)
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, float(v), now, epoch)
        for name, values in (history or {}).items()
        for epoch, v in enumerate(values, 1)
    ]
    metrics += [Metric(name, float(v), now, 0) for name, v in (final or {}).items()]
    client = tracking.client(root)
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    (out / "train.log").write_text(log)
    return run_id


def open_page(page: str, **query) -> AppTest:
    at = AppTest.from_string(NAV, default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(str(PAGES / f"{page}.py"))
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def widget(at: AppTest, name: str):
    """The form widget labelled with a config field's name ("data set": the list of sets)."""
    kinds = (at.number_input, at.text_input, at.checkbox, at.selectbox)
    found = [w for kind in kinds for w in kind if w.label == name]
    assert len(found) == 1, f"{name}: {len(found)} widgets"
    return found[0]


def submitted(at: AppTest) -> dict:
    """Train pressed: the run the form queued (the page moved on to its Job page)."""
    at.button[0].click().run()
    assert_clean(at)
    run_id = at.query_params["run"]
    return tracking.get_run(run_id[0] if isinstance(run_id, list) else run_id)


@pytest.fixture
def runner_held(store):
    """The queue runner's lock held, as by a runner busy elsewhere: jobs queue, none starts."""
    with open(store / "jobs.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ------------------------------------------------------------------------ Runs


def test_runs_table_shows_exactly_the_differing_settings(store):
    first = record(store, "alexnet", {**TINY_ALEXNET, "lr": 0.001}, {"val_accuracy": [0.5, 0.8]})
    record(store, "alexnet", {**TINY_ALEXNET, "lr": 0.003}, {"val_accuracy": [0.6, 0.7]})
    record(store, "mlp", {"hidden_layer_size": 25}, final={"test_accuracy": 0.91})
    newest = record(store, "mlp", {"hidden_layer_size": 50}, final={"test_accuracy": 0.95})

    at = open_page("runs")
    assert_clean(at)
    table = at.dataframe[0].value
    fixed = ["run", "clone", "module", "status", "data set", "result", "metric"]
    fixed += ["duration_s", "started"]
    # lr differs between the AlexNet runs, hidden_layer_size between the MLPs; out_dir (one
    # per run) and every other setting are the same within each module
    assert list(table.columns) == [*fixed, "hidden_layer_size", "lr"]
    assert table["run"].iloc[0] == f"job?run={newest}"  # newest first, linked to its Job page
    assert table["clone"].iloc[-1] == f"new_run?clone={first}"
    assert list(table["module"]) == ["mlp", "mlp", "alexnet", "alexnet"]
    assert list(table["result"]) == pytest.approx([0.95, 0.91, 0.7, 0.8])
    assert list(table["metric"]) == ["test_accuracy"] * 2 + ["val_accuracy"] * 2
    assert table["lr"].iloc[2:].tolist() == [0.003, 0.001]  # numbers: they sort as numbers
    assert math.isnan(table["lr"].iloc[0])  # an MLP has no lr

    at.segmented_control[0].set_value("alexnet").run()
    table = at.dataframe[0].value
    assert list(table.columns) == [*fixed, "lr"]
    assert len(table) == 2


def test_runs_page_shows_the_queue_with_cancel(store, runner_held):
    queued = jobs.submit("alexnet", {**TINY_ALEXNET, "data_dir": str(store / "data")})
    at = open_page("runs")
    assert_clean(at)
    assert any("Queue (1 waiting)" in s.value for s in at.subheader)
    at.button(key=f"cancel-{queued}").click().run()
    assert_clean(at)
    assert tracking.get_run(queued)["status"] == "KILLED"
    assert not any("Queue" in s.value for s in at.subheader)


# ------------------------------------------------------------------------ New run / Clone


def test_clone_prefills_every_field_highlights_the_change_and_records_cloned_from(
    store, runner_held
):
    settings = {**TINY_ALEXNET, "data_dir": str(store / "data"), "lr": 0.001, "seed": 7}
    old = record(store, "alexnet", settings, {"val_accuracy": [0.6]})
    old_params = tracking.get_run(old)["params"]
    expected = dataclasses.asdict(tracking.params_to_config("alexnet", old_params))

    at = open_page("new_run", clone=old)
    assert_clean(at)
    shown = [f["name"] for f in view.form_fields("alexnet")]
    assert set(shown) == set(expected) - {"out_dir", "resume"}
    for name in shown:
        assert widget(at, name).value == expected[name], name
    assert "Same settings" in at.info[0].value

    widget(at, "lr").set_value(0.003).run()
    assert_clean(at)
    assert at.info[0].value == "changed: lr 0.001 -> 0.003"
    marks = [c.value for c in at.caption if "changed" in c.value]
    assert marks == [":orange[changed — was 0.001]"]  # under lr only

    at.button[0].click().run()  # Train
    assert_clean(at)
    new = at.query_params["run"][0] if isinstance(at.query_params["run"], list) else None
    new = new or at.query_params["run"]
    run = tracking.get_run(new)
    assert run["status"] == "SCHEDULED" and run["tags"]["cloned_from"] == old
    names = [f.name for f in dataclasses.fields(jobs.config_class("alexnet"))]
    differ = {k for k in names if run["params"].get(k) != old_params.get(k)}
    assert differ == {"lr", "out_dir"}  # out_dir: each job trains into its own folder
    assert float(run["params"]["lr"]) == 0.003
    assert any("Job alexnet" in t.value for t in at.title)  # on the new run's Job page
    jobs.cancel(new)


def test_bad_values_are_refused_with_the_reason_and_nothing_submitted(store, runner_held):
    at = open_page("new_run", module="alexnet")
    assert_clean(at)
    widget(at, "data set").set_value(view.OTHER_DATA).run()
    assert widget(at, "data_dir").value == str(store / "data")  # a new run's: $DATA_DIR
    widget(at, "lr").set_value(-1.0)
    widget(at, "batch_size").set_value(0)
    widget(at, "dataset").set_value("cats-dogs").run()  # not prepared in this store
    reasons = [e.value for e in at.error]
    assert "The learning rate must be above 0, not -1." in reasons
    assert "The batch size must be at least 1, not 0." in reasons
    assert any("make data DATASET=cats-dogs" in r for r in reasons)
    at.button[0].click().run()
    assert_clean(at)
    assert at.error[-1].value == (
        "Not started: dataset, batch_size, lr refused (the reasons are beside them)."
    )
    assert tracking.list_runs() == [] and jobs.queue() == []


# The data set lists on a data folder holding the small synthetic set: its crops and its
# scenes (4 shapes x 24 train and 12 val crops; 16 + 4 scenes of 3 shapes), the bundled digits.
SET_LISTS = {
    "alexnet": [
        "Synthetic shapes, crops (small) — 96 train / 48 val, 4 classes",
        "synthetic (full) — generated on first use",
    ],
    "detectnet": [
        "Synthetic scenes, COCO boxes (small) — 16 train / 4 val, 3 classes",
        "synthetic (full) — generated on first use",
    ],
    "mlp": ["Handwritten digits (scikit-learn, bundled) — 1,347 train / 450 test, 10 classes"],
}


@pytest.mark.parametrize("module", list(SET_LISTS))
def test_the_data_set_list_holds_exactly_the_prepared_sets_of_the_module(
    store, small_synthetic, monkeypatch, module
):
    monkeypatch.setenv("DATA_DIR", str(small_synthetic))
    at = open_page("new_run", module=module)
    assert_clean(at)
    assert widget(at, "data set").options == [*SET_LISTS[module], view.OTHER_DATA]
    assert widget(at, "dataset").proto.disabled  # the chosen set sets it
    assert not [c for c in at.caption if c.value.startswith("No ")]  # one is prepared


def test_choosing_a_prepared_set_trains_on_it(store, runner_held, small_synthetic, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(small_synthetic))
    at = open_page("new_run", module="alexnet")
    box = widget(at, "data set")
    assert box.index == 1  # a new run starts on the trainer's default: the full synthetic set
    assert [n.label for n in at.number_input if n.label.startswith("training images")]
    box.select_index(0).run()  # the prepared small crops
    assert_clean(at)
    assert widget(at, "dataset").value == "synthetic"
    assert widget(at, "synthetic_size").value == "small"
    assert widget(at, "synthetic_size").proto.disabled
    summary = [c.value for c in at.caption if c.value.startswith("synthetic-small/crops: ")]
    assert summary and "4 classes (background, cross, ring, star), 96 train / 48 val" in summary[0]
    links = [link for link in at.get("page_link") if link.proto.label == "Open in Data sets"]
    assert [link.proto.query_string for link in links] == ["set=synthetic-small%2Fcrops"]
    # the LR preview counts the set's 96 training images: 2 steps of 64 an epoch
    assert not [n for n in at.number_input if n.label.startswith("training images")]
    assert "96 training images in synthetic-small/crops." in [c.value for c in at.caption]
    assert any("over 22 epochs × 2 steps" in c.value for c in at.caption)

    run = submitted(at)
    train_as = catalog.find("synthetic-small/crops", small_synthetic).train_as
    assert (run["params"]["dataset"], run["params"]["synthetic_size"]) == ("synthetic", "small")
    assert f"--dataset={run['params']['dataset']}" in train_as
    assert f"--synthetic_size={run['params']['synthetic_size']}" in train_as
    assert run["params"]["data_dir"] == str(small_synthetic)
    jobs.cancel(run["run_id"])


def test_with_no_set_prepared_the_form_says_how_to_prepare_one(store):
    at = open_page("new_run", module="detectnet")
    assert_clean(at)
    assert widget(at, "data set").options == [
        "synthetic (full) — generated on first use",
        "synthetic (small) — generated on first use",
        view.OTHER_DATA,
    ]
    hints = [c.value for c in at.caption if c.value.startswith("No detectnet data set")]
    assert hints and "`make data DATASET=coco`" in hints[0]
    assert any("Not generated yet" in c.value for c in at.caption)


def test_a_clone_of_a_run_on_its_own_folder_keeps_the_path(store, runner_held, tmp_path):
    photos = tmp_path / "my photos"
    for split in ("train", "val"):
        (photos / split / "cat").mkdir(parents=True)
    settings = {**TINY_ALEXNET, "dataset": str(photos), "data_dir": str(store / "data")}
    old = record(store, "alexnet", settings, {"val_accuracy": [0.6]})
    at = open_page("new_run", clone=old)
    assert_clean(at)
    assert widget(at, "data set").value == view.OTHER_DATA
    assert widget(at, "dataset").value == str(photos)
    assert not widget(at, "dataset").proto.disabled
    assert widget(at, "synthetic_size").value == "small"  # free again: no set chosen
    assert at.info[0].value == "Same settings as the cloned run."
    run = submitted(at)
    assert run["params"]["dataset"] == str(photos) and run["tags"]["cloned_from"] == old
    jobs.cancel(run["run_id"])


def test_a_field_with_a_fixed_set_of_values_is_a_list_of_its_trainers_choices(store):
    fields = {f["name"]: f for f in tracking.config_fields("mlp")}
    assert fields["optimizer"]["choices"] == list(train_mlp.OPTIMIZERS)  # what fit() dispatches on
    assert fields["lambda_"]["choices"] is None
    assert {f["name"]: f["choices"] for f in tracking.config_fields("detectnet")}["init"] is None

    at = open_page("new_run", module="mlp")
    assert_clean(at)
    optimizer = widget(at, "optimizer")
    assert optimizer.options == list(train_mlp.OPTIMIZERS) and optimizer.value == "lbfgs"
    assert widget(at, "backend").options == train_mlp.CHOICES["backend"]
    devices = view.devices()
    assert widget(at, "device").options == [
        devices[c] for c in train_mlp.CHOICES["device"] if c in devices
    ]
    optimizer.set_value("gd").run()
    assert_clean(at)
    assert "Gradient descent with Nesterov momentum: a fixed step size." in [
        c.value for c in at.caption
    ]
    # every value offered passes the jobs' own checks
    for module in tracking.MODULES:
        for field in tracking.config_fields(module):
            for value in field["choices"] or []:
                if field["name"] != "device" or value in devices:
                    assert field["name"] not in jobs.validate(module, {field["name"]: value})

    at = open_page("new_run", module="alexnet")
    size = widget(at, "synthetic_size")
    assert size.options == ["full", "small"] and size.proto.disabled  # the data set's


# ------------------------------------------------------------------------ Compare and Job


def test_compare_overlays_the_curves_and_marks_the_best_run(store):
    accs = {0.001: [0.5, 0.7, 0.8], 0.003: [0.6, 0.9, 0.85], 0.01: [0.4, 0.5, 0.6]}
    ids = [
        record(store, "alexnet", {**TINY_ALEXNET, "lr": lr}, {"val_accuracy": a, "lr": [lr] * 3})
        for lr, a in accs.items()
    ]
    at = open_page("compare", runs=",".join(ids))
    assert_clean(at)
    best = tracking.get_run(ids[1])
    assert at.success[0].value == f"Best on validation: {view.label(best)} (val_accuracy 0.8500)."
    titles = [m.value for m in at.markdown]
    assert titles == ["**validation accuracy**", "**learning rate**"]
    settings = at.dataframe[0].value
    assert list(settings.index) == ["data set", "lr"]
    assert [float(v) for v in settings.loc["lr"]] == [0.001, 0.003, 0.01]
    assert at.dataframe[1].value.loc["val_accuracy"].tolist() == pytest.approx([0.8, 0.85, 0.6])

    two = view.curves({"a": {"lr": [(1, 0.1)]}, "b": {"lr": [(1, 0.2), (2, 0.3)]}})["lr"]
    data, spec = view.line_chart(two, "lr", bold="b")
    assert data.values.tolist() == [[1, "a", 0.1], [1, "b", 0.2], [2, "b", 0.3]]  # no NaN rows
    assert spec["encoding"]["strokeWidth"]["condition"]["test"] == 'datum.series === "b"'
    histories = {
        view.label(tracking.get_run(i)): tracking.metric_history(i, ["val_accuracy"]) for i in ids
    }
    frame = view.curves(histories)["val_accuracy"]
    assert frame.shape == (3, 3) and frame.iloc[1].tolist() == [0.7, 0.9, 0.5]


def test_job_page_shows_the_final_metrics_curves_and_log_tail(store):
    log = "\n".join(f"line {i}" for i in range(100))
    run_id = record(
        store,
        "alexnet",
        TINY_ALEXNET,
        {
            "train_loss": [1.0, 0.5],
            "val_loss": [1.1, 0.7],
            "val_accuracy": [0.6, 0.8],
            "lr": [0.001, 0.0001],
        },
        final={"pointing_accuracy": 0.75},
        log=log,
    )
    at = open_page("job", run=run_id)
    assert_clean(at)
    assert at.success[0].value == "Finished."
    assert {m.label: m.value for m in at.metric} == {
        "val_accuracy": "0.8000",
        "pointing_accuracy": "0.7500",
    }
    assert [m.value for m in at.markdown] == ["**loss**", "**accuracy**", "**learning rate**"]
    assert at.code[0].value.splitlines() == [f"line {i}" for i in range(60, 100)]
    assert [b.label for b in at.button] == ["Export to ONNX"]  # no checkpoint: export says why
    at.button[0].click().run()
    assert "has no checkpoint yet" in at.error[0].value


def test_stopped_run_with_a_training_state_offers_resume(store):
    run_id = record(store, "alexnet", TINY_ALEXNET, {"val_accuracy": [0.5]}, status="KILLED")
    at = open_page("job", run=run_id)
    assert [b.label for b in at.button] == []
    (Path(tracking.get_run(run_id)["tags"]["out_dir"]) / "train_state.pt").write_bytes(b"")
    at.run()
    assert at.warning[0].value == "Killed." and [b.label for b in at.button] == ["Resume"]


# ------------------------------------------------------------------------ LR preview


@pytest.mark.parametrize(
    ("module", "epochs", "steps"),
    [("alexnet", 3, 7), ("detectnet", 30, 113), ("alexnet", 22, 1000)],
)
def test_lr_preview_is_torchs_one_cycle_schedule(module, epochs, steps):
    pct_start = importlib.import_module(f"workshop.train_{module}").PCT_START  # the trainer's
    cfg = {"lr": 0.003, "weight_decay": 1e-4, "epochs": epochs}
    preview = view.lr_schedule(module, cfg, steps)
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=0.1)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.003, total_steps=epochs * steps, pct_start=pct_start
    )
    lrs = []
    for _ in range(epochs * steps):  # the lr each optimizer step runs with
        lrs.append(reference.get_last_lr()[0])
        optimizer.step()
        reference.step()
    picked = [round(x * steps) for x in preview.index]
    assert len(picked) == min(epochs * steps, view.PREVIEW_POINTS)
    assert picked[0] == 0 and picked[-1] == epochs * steps - 1
    assert preview["lr"].tolist() == pytest.approx([lrs[i] for i in picked], rel=1e-9)
    assert max(preview["lr"]) == pytest.approx(0.003, rel=1e-2)  # peaks between two steps


def test_lr_preview_of_the_mlp():
    gd = view.lr_schedule("mlp", {"optimizer": "gd", "learning_rate": 0.5, "maxiter": 0}, 1)
    assert gd["lr"].tolist() == [0.5, 0.5] and gd.index.tolist() == [0, 1000]
    assert view.lr_schedule("mlp", {"optimizer": "lbfgs"}, 1) is None


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("page", "query"),
    [
        ("job", {"run": "0123abcd"}),
        ("new_run", {"clone": "0123abcd"}),
        ("compare", {"runs": "0123abcd,89ef"}),
    ],
)
def test_an_unknown_run_id_gives_one_sentence(store, page, query):
    record(store, "mlp", {})
    at = open_page(page, **query)
    assert_clean(at)
    assert [e.value for e in at.error] == [f"There is no run 0123abcd in {store / 'mlflow.db'}."]


def test_a_broken_store_gives_one_sentence(store):
    (store / "mlflow.db").write_bytes(b"this is not an SQLite file" * 100)
    for page in ("runs", "compare"):
        at = open_page(page)
        assert_clean(at)
        assert len(at.error) == 1 and "is not an SQLite file" in at.error[0].value


# ------------------------------------------------------------------------ end to end, timing


@pytest.mark.slow
def test_a_job_started_from_the_form_trains_and_its_page_follows_it(store):
    at = open_page("new_run", module="mlp")
    widget(at, "maxiter").set_value(5)
    widget(at, "baselines").uncheck().run()
    at.button[0].click().run()  # Train: a real job, the trainer in a child process
    assert_clean(at)
    run_id = at.query_params["run"]
    assert any("Job mlp" in t.value for t in at.title)
    at.switch_page(str(PAGES / "job.py"))  # AppTest reruns the page it was last sent to
    seen, deadline = set(), time.monotonic() + 300
    while (status := tracking.get_run(run_id)["status"]) in view.LIVE:
        assert time.monotonic() < deadline, jobs.log_tail(run_id)
        at.run()  # the page as its 2 s refresh draws it
        assert_clean(at)
        if status == "RUNNING" and at.button and at.button[0].label == "Abort":
            seen.add("live")
        time.sleep(0.5)
    at.run()
    assert_clean(at)
    assert status == "FINISHED" and at.success[0].value == "Finished.", jobs.log_tail(run_id)
    assert [m.label for m in at.metric] == ["test_accuracy"]
    assert [m.value for m in at.markdown] == ["**loss**", "**accuracy**"]  # cost; train/test
    assert "MLP 400-25-10 on sklearn-digits-20x20" in at.code[0].value  # the log's tail
    at.button[0].click().run()  # Export to ONNX
    assert_clean(at)
    onnx = Path(tracking.get_run(run_id)["tags"]["onnx"])
    assert onnx.is_file() and onnx.parent == store / f"mlp-{run_id[:8]}"
    test = [link for link in at.get("page_link") if link.proto.label == "Test it"]
    assert [link.proto.query_string for link in test] == [f"model=mlp-{run_id[:8]}"]
    print(f"live view seen while it ran: {bool(seen)}")


def timed(at: AppTest, repeats: int = 3) -> float:
    """The best of a few script runs of the open page (the server's work for one view)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        at.run()
        best = min(best, time.perf_counter() - start)
    assert_clean(at)
    return best


@pytest.mark.slow
def test_runs_with_200_runs_and_compare_of_5_each_render_within_a_second(store):
    history = {
        m: [1.0, 0.8, 0.6, 0.5, 0.4] for m in ("train_loss", "val_loss", "val_accuracy", "lr")
    }
    ids = [
        record(
            store, "alexnet", {**TINY_ALEXNET, "lr": 0.001 * (1 + k % 4), "seed": k % 3}, history
        )
        for k in range(200)
    ]
    at = open_page("runs")
    assert len(at.dataframe[0].value) == 200
    runs_s = timed(at)
    at = open_page("compare", runs=",".join(ids[:5]))
    assert len(at.markdown) == 4  # four metrics overlaid
    compare_s = timed(at)
    print(f"Runs page, 200 runs: {runs_s:.3f} s; Compare, 5 runs: {compare_s:.3f} s")
    assert runs_s <= 1.0 and compare_s <= 1.0
