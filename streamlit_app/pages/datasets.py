"""The Data sets page (DIGITS' data set page): what each prepared set holds, and Prepare.

Every prepared set under the data folder ($DATA_DIR, default data/) with its image
size and type, classes, images per class and split, what was skipped and why, size on
disk, and an explore gallery; Prepare runs `make data`'s code (or the synthetic
generator) in a child process with a progress bar. ``workshop.data.catalog`` reads;
this page only draws. ``?set=<name>`` opens one set.
"""

from __future__ import annotations

import math
import os

import pandas as pd
import streamlit as st

from models.imageio import BadImage
from streamlit_app.app import through_navigation
from workshop.data import catalog

PER_PAGE = 25  # examples per gallery page, as DIGITS' "Explore the db"
COLUMNS = 5
SPLIT_ORDER = ("train", "val", "test")


def stamp(root: str) -> tuple:
    """What changes when a set is prepared: the data folder's entries and their times."""
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(root)))
    except OSError:
        return ()


@st.cache_data(show_spinner="reading the data folder ...", ttl=600)
def data_sets(root: str, version: tuple = ()) -> list[catalog.DataSet]:
    """Every prepared set (cached per `version`: the folder's stamp)."""
    found = catalog.data_sets(root)
    for s in found:
        _ = s.bytes_on_disk  # walked once here, then kept in the cached copy
    return found


def size(n: int | None) -> str:
    if n is None:
        return "bundled"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def overview(sets: list[catalog.DataSet]) -> None:
    splits = [s for s in SPLIT_ORDER if any(s in d.images for d in sets)]
    st.dataframe(
        [
            {
                "data set": d.name,
                "holds": d.kind,
                "classes": len(d.classes),
                **{split: d.images.get(split) for split in splits},
                "image size": d.image_size,
                "on disk": size(d.bytes_on_disk),
                "synthetic": d.synthetic,
            }
            for d in sets
        ],
        hide_index=True,
    )


def details(d: catalog.DataSet) -> None:
    cols = st.columns(4)
    cols[0].metric("Classes", len(d.classes))
    cols[1].metric("Images", f"{sum(d.images.values()):,}")
    cols[2].metric("On disk", size(d.bytes_on_disk))
    cols[3].metric("Trains", d.module)
    st.markdown(
        f"**Image size** {d.image_size} · **type** {d.image_type} · "
        + " · ".join(f"**{split}** {n:,}" for split, n in d.images.items())
    )
    st.caption(f"{d.title} · {'synthetic' if d.synthetic else 'real data'} · {d.source}")
    st.markdown(f"Train on it: `{d.train_as}`")

    what = "images showing each class" if d.kind == "scenes" else "images per class"
    st.markdown(f"**{what.capitalize()}, per split**")
    counts = pd.DataFrame(d.counts).reindex(d.classes)  # rows: classes, columns: splits
    st.bar_chart(
        counts, stack=False, horizontal=True, height=80 + 28 * len(d.classes) * len(d.counts)
    )
    if d.objects:
        st.markdown("**Boxes per class and split** (crowd regions are counted under skipped)")
        st.dataframe(pd.DataFrame(d.objects).reindex(d.classes))

    st.markdown("**Skipped and converted**")
    if d.skipped:
        st.dataframe(d.skipped, hide_index=True)
    elif d.synthetic:
        st.caption("Nothing skipped: generated here, every image is readable.")
    elif d.path is None:
        st.caption("Nothing skipped: bundled with scikit-learn.")
    else:
        st.caption("Nothing skipped (no report.json, or nothing in it).")
    explore(d)


def explore(d: catalog.DataSet) -> None:
    st.subheader("Explore")
    cols = st.columns(3)
    split = cols[0].selectbox(
        "Split", d.splits, index=d.splits.index(d.held_out), key=f"explore-split-{d.name}"
    )
    cls = cols[1].selectbox("Class", ["all", *d.classes], key=f"explore-class-{d.name}")
    wanted = None if cls == "all" else cls
    total, every = d.examples(split, wanted, 0, 10**9)  # lazy: nothing is read yet
    pages = max(1, math.ceil(total / PER_PAGE))
    page = cols[2].number_input(
        f"Page (of {pages})", 1, pages, 1, key=f"explore-page-{d.name}-{split}-{cls}"
    )
    start = (page - 1) * PER_PAGE
    shown = every[start : start + PER_PAGE]
    if not shown:
        st.caption(f"No {cls} examples in {split}.")
        return
    st.caption(f"{total:,} examples; {start + 1}-{start + len(shown)} shown")
    for row in range(0, len(shown), COLUMNS):
        for col, example in zip(st.columns(COLUMNS), shown[row : row + COLUMNS]):
            try:
                col.image(example.load(), caption=example.caption, width="stretch")
            except BadImage as err:
                col.caption(f"{example.caption}: {err}")


# ------------------------------------------------------------------------ Prepare


def prepared(name: str, sets: list[catalog.DataSet]) -> bool:
    found = {d.name.split("/")[0] for d in sets}
    return name in found or (name == "coco" and any(n.startswith("coco-") for n in found))


@st.fragment(run_every=1.0)
def watch(name: str, root: str) -> None:
    """A running Prepare's progress, redrawn every second; the page reloads when it ends."""
    status = catalog.prepare_status(name, root)
    if status["state"] != "running":  # the set's folder is new: the listing's key changes
        st.rerun(scope="app")
    st.progress(status["fraction"] or 0.0, text=status["text"][-120:] or "starting ...")


def mirror(label: str, key: str) -> str:
    return st.text_input(
        label, key=key, placeholder="optional: a local copy, e.g. http://127.0.0.1:8000/..."
    ).strip()


def options(name: str) -> tuple[str, ...]:
    """The form fields of a Prepare, as the CLI's options (an empty mirror: the default)."""
    found = []
    if name == "cats-dogs":
        back = st.checkbox(
            "Add the background class (COCO photos without cats or dogs)",
            True,
            key="prepare-cats-dogs-background",
        )
        found.append(f"--background={str(back).lower()}")
        found.append(f"--url={mirror('PetImages archive from', 'prepare-cats-dogs-url')}")
        if back:
            url = mirror("COCO annotations archive from", "prepare-cats-dogs-coco")
            found.append(f"--background_from={url}")
    elif name == "coco":
        cats = st.text_input("Categories", "cat,dog", key="prepare-coco-categories")
        most = st.number_input(
            "Images per split (0: all)", 0, value=200, step=50, key="prepare-coco-max"
        )
        found += [f"--categories={cats}", f"--max_images={int(most)}"]
        found.append(f"--url={mirror('COCO annotations archive from', 'prepare-coco-url')}")
    return tuple(o for o in found if not o.endswith("="))  # no mirror typed: the default


def prepare_section(root: str, sets: list[catalog.DataSet]) -> None:
    st.subheader("Prepare")
    st.caption(
        "Online sets are downloaded (checksums verified, resumable) and prepared as "
        "`make data DATASET=...` does; the synthetic ones are generated here, offline."
    )
    for name, spec in catalog.PREPARE.items():
        with st.container(border=True):
            status = catalog.prepare_status(name, root)
            done = " · prepared" if prepared(name, sets) else ""
            st.markdown(f"**{name}** · {spec.title}{done}")
            if status["state"] == "running":
                watch(name, root)
                continue
            args = options(name)
            verb = "Download and prepare" if spec.online else "Generate"
            if st.button(f"{verb} {name}", key=f"prepare-{name}"):
                try:
                    catalog.start_prepare(name, root, args)
                except catalog.PrepareError as err:
                    st.warning(str(err))
                else:
                    st.rerun()
            if status["state"] == "failed":
                st.error(f"The last try failed: {status['text']}")
                with st.expander("Its output"):
                    st.code(status["log"])
            elif status["state"] == "stopped":
                st.warning("The last try stopped before it finished (the process is gone).")


def main() -> None:
    st.title("Data sets")
    root = str(catalog.data_root())
    st.caption(f"Prepared under `{catalog.data_root().resolve()}` ($DATA_DIR, default data/)")
    sets = data_sets(root, stamp(root))
    overview(sets)
    names = [d.name for d in sets]
    wanted = st.query_params.get("set")
    name = st.selectbox(
        "Data set",
        names,
        index=names.index(wanted) if wanted in names else 0,
        format_func=lambda n: f"{n} — {sets[names.index(n)].title}",
    )
    st.query_params["set"] = name
    details(sets[names.index(name)])
    prepare_section(root, sets)


through_navigation()
main()
