"""New run / Clone: every setting of a trainer's config, its LR schedule, the device; Train.

?module=alexnet preselects a module; ?clone=<run_id> fills the form from that run's params,
marks each field changed since, and records cloned_from on the new run. The data set is
chosen from the prepared ones (DIGITS' "Select Dataset"), or typed as a path.
"""

from __future__ import annotations

import math
import os

import streamlit as st

from streamlit_app import app
from streamlit_app import runs_view as view
from workshop import jobs, tracking
from workshop.data import catalog

app.through_navigation()  # a first visit straight to this page's URL runs the app first


@st.cache_resource(show_spinner=False)
def devices() -> dict[str, str]:
    return view.devices()


def folder_stamp(root) -> tuple:
    """What changes when a set is prepared: the data folder's entries and their times."""
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(root)))
    except OSError:
        return ()


@st.cache_data(show_spinner="reading the data folder ...", ttl=600, max_entries=16)
def data_choices(module: str, root: str, version: tuple) -> list[view.DataChoice]:
    """The module's data set choices (cached per ``version``: the folder's stamp)."""
    return view.data_choices(module, root)


@st.cache_data(show_spinner=False, max_entries=64)
def lr_schedule(module: str, settings: tuple, steps: int):
    return view.lr_schedule(module, dict(settings), steps)


st.title("New run")

clone_id = st.query_params.get("clone")
clone = None
if clone_id:
    try:
        clone = tracking.get_run(clone_id)
    except view.ERRORS as err:
        st.error(view.sentence(err))
        st.stop()

if clone:
    module = clone["module"]
    st.caption(f"Clone of {view.label(clone)} · {clone['status']} · {view.data_set(clone)}")
else:
    asked = st.query_params.get("module")
    module = (
        st.segmented_control(
            "Module",
            tracking.MODULES,
            default=asked if asked in tracking.MODULES else "alexnet",
            key="module",
        )
        or "alexnet"
    )

fields = view.form_fields(module)
start = view.initial_values(module, clone)
key = f"{clone_id or 'new'}-{module}"
summary = st.empty()
values, slots = {}, {}

# The data set: a prepared one (it fixes the fields it names: dataset, data_dir, and
# synthetic_size or categories), or any path typed in.
root = str(catalog.data_root())
choices = data_choices(module, root, folder_stamp(root))
by_key = {c.key: c for c in choices}
found = view.matching_choice(choices, start)
data_key = st.selectbox(
    "data set",
    [*by_key, view.OTHER_DATA],
    index=list(by_key).index(found.key) if found else len(by_key),
    format_func=lambda k: by_key[k].label if k in by_key else k,
    help="The prepared data sets this trainer takes (the Data sets page shows and prepares them).",
    key=f"{key}-data-set",
)
chosen = by_key.get(data_key)
fixed = chosen.settings if chosen else {}
comment = next(f["comment"] for f in fields if f["name"] == "dataset")
values["dataset"] = st.text_input(  # the chosen set's value, fixed (a new key per value)
    "dataset",
    value=fixed.get("dataset", str(start["dataset"])),
    placeholder="path/to/folder or file",
    disabled=chosen is not None,
    help=f"{comment} (set by the data set above)" if chosen else comment,
    key=f"{key}-dataset-set-{fixed['dataset']}" if chosen else f"{key}-dataset",
)
slots["dataset"] = st.empty()
if chosen:
    line, link = st.columns([4, 1], vertical_alignment="center")
    line.caption(chosen.summary)
    if chosen.name:
        link.page_link(
            view.PAGES / "datasets.py", label="Open in Data sets", query_params={"set": chosen.name}
        )
hint = view.unprepared_hint(module, choices)
if hint:
    st.caption(hint)


def float_step(value: float) -> float:
    """A step of the value's own order of magnitude (lr 0.001 steps by 0.001, not 0.01)."""
    return 10.0 ** math.floor(math.log10(abs(value))) if value else 0.1


columns = st.columns(2)
for i, field in enumerate(f for f in fields if f["name"] != "dataset"):
    name, kind = field["name"], view.type_name(field)
    value = start.get(name, field["default"])
    help_text = f"{field['comment']} (default: {field['default']})"
    where = columns[i % 2]
    wkey = f"{key}-{name}"
    if name in fixed:  # the chosen data set's: shown, not editable (a new key per value)
        value, wkey = fixed[name], f"{wkey}-set-{fixed[name]}"
        help_text = f"{field['comment']} (set by the data set above)"
    options = view.choice_labels(field, value, devices())
    if options is not None:
        values[name] = where.selectbox(
            name,
            list(options),
            index=list(options).index(str(value)),
            format_func=options.get,
            help=help_text,
            disabled=name in fixed,
            key=wkey,
        )
    elif name in fixed:
        values[name] = where.text_input(
            name, value=str(value), help=help_text, disabled=True, key=wkey
        )
    elif kind == "bool":
        values[name] = where.checkbox(name, value=bool(value), help=help_text, key=wkey)
    elif kind == "int":
        values[name] = where.number_input(name, value=int(value), step=1, help=help_text, key=wkey)
    elif kind == "float":
        values[name] = where.number_input(
            name,
            value=float(value),
            step=float_step(float(value)),
            format="%g",
            help=help_text,
            key=wkey,
        )
    else:
        values[name] = where.text_input(name, value=str(value), help=help_text, key=wkey)
    slots[name] = where.empty()

changed = view.changes(start, values) if clone else {}
errors = jobs.validate(module, values)
for name, slot in slots.items():
    if name in errors:
        slot.error(errors[name])
    elif name in changed:
        slot.caption(f":orange[changed — was {changed[name][0]}]")
if clone:
    summary.info(view.changes_summary(changed) if changed else "Same settings as the cloned run.")

st.subheader("Learning rate schedule")
if module == "mlp":
    schedule = view.lr_schedule(module, values, 1)
    if schedule is None:
        st.caption(f"{values['optimizer']} chooses each step by line search: no learning rate.")
    else:
        st.vega_lite_chart(*view.line_chart(schedule, "step size"), width="stretch")
        st.caption("Gradient descent with Nesterov momentum: a fixed step size.")
elif "lr" in errors or "epochs" in errors or "batch_size" in errors:
    st.caption("Fix the settings above to see the schedule.")
else:
    if chosen and chosen.train_images:
        images = chosen.train_images
        st.caption(f"{images:,} training images in {chosen.name}.")
    else:
        known = view.train_images(clone) if clone else None
        images = st.number_input(
            "training images (for this preview; the trainer counts its own data)",
            min_value=1,
            value=known or 1000,
            step=100,
            key=f"{key}-preview-images",
        )
    steps = view.steps_per_epoch(values, images)
    schedule = lr_schedule(module, tuple(sorted(values.items())), steps)
    st.vega_lite_chart(*view.line_chart(schedule, "learning rate"), width="stretch")
    st.caption(
        f"AdamW with a one-cycle schedule over {values['epochs']} epochs × {steps} steps, "
        f"peak {values['lr']:g} after {view.pct_start(module):.0%} of the steps "
        "(torch's OneCycleLR)."
    )

if st.button("Train", type="primary"):
    if errors:
        named = [k for k in values if k in errors] + [k for k in errors if k not in values]
        st.error(f"Not started: {', '.join(named)} refused (the reasons are beside them).")
    else:
        try:
            run_id = jobs.submit(module, values, cloned_from=clone_id)
        except view.ERRORS as err:
            st.error(f"Not started: {view.sentence(err)}")
        else:
            st.switch_page(view.PAGES / "job.py", query_params={"run": run_id})
