"""Image sets for the Evaluate page: the bundled photos, uploads (each checked as Explore's single
upload is, decoded once per file and model size) or a folder on the server (where allowed)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import streamlit as st

from percviz import evaluation as ev
from percviz.errors import PercvizError
from percviz.images import SAMPLES, fit_to_model
from percviz.limits import Limits
from ui.common import (
    UPLOAD_TYPES,
    accept_uploads,
    cached_sample,
    read_upload,
    short_sample_name,
    upload_total_mb,
)


def sample_images(names: Sequence[str], size: int) -> list[ev.EvalImage]:
    """The bundled photos ``names`` at the model's ``size``×``size``."""
    return [ev.EvalImage.from_pixels(n, fit_to_model(cached_sample(n), size)) for n in names]


def image_set_input(key: str, size: int, limits: Limits) -> tuple[list[ev.EvalImage], list[ev.Skipped]]:
    """Source picker and its widgets → the images read at ``size`` and those skipped, with the
    reason (a refusal of the whole set is shown as one error line)."""
    sources = ["Bundled photos", "Upload"] + ([] if not limits.allow_server_folders else ["Server folder"])
    source = st.radio("Source", sources, horizontal=True, key=f"{key}_source", label_visibility="collapsed")
    images: list[ev.EvalImage] = []
    skipped: list[ev.Skipped] = []
    try:
        if source == "Bundled photos":
            names = st.multiselect(
                "Photos",
                list(SAMPLES),
                default=list(SAMPLES)[:4],
                format_func=short_sample_name,
                key=f"{key}_samples",
            )
            images = sample_images(names, size)
        elif source == "Upload":
            files = st.file_uploader(
                f"Up to {limits.max_images} images (PNG, JPEG, WebP, BMP, TIFF), each up to "
                f"{limits.max_upload_mb} MB, {upload_total_mb(limits)} MB together",
                accept_multiple_files=True,
                type=UPLOAD_TYPES,
                key=f"{key}_files",
            )
            files = files or []
            accepted, refused = accept_uploads([(f.name, f.size) for f in files], limits)
            skipped.extend(ev.Skipped(name, f"not read: {reason}") for name, reason in refused)
            cache = st.session_state.setdefault(f"pv_{key}_decoded", {})
            kept = set()
            for f in (files[i] for i in accepted):
                data = f.getvalue()
                digest = hashlib.sha256(data).hexdigest() + str(size)
                if digest not in cache:
                    try:
                        cache[digest] = fit_to_model(read_upload(data, f.name, limits).pixels, size)
                    except PercvizError as exc:
                        skipped.append(ev.Skipped(f.name, str(exc)))
                        continue
                kept.add(digest)
                if f.name not in {im.name for im in images}:
                    images.append(ev.EvalImage.from_pixels(f.name, cache[digest]))
            for stale in set(cache) - kept:  # only the model-size pixels of the current files are kept
                del cache[stale]
        else:
            folder = st.text_input(
                "Folder on this server", key=f"{key}_folder", placeholder="/data/imagenet-val-100"
            )
            labels_file = st.text_input("Optional true labels (file,class per line)", key=f"{key}_labels")
            if folder:
                true = ev.read_true_labels(labels_file) if labels_file else None
                images, skipped = ev.load_folder(folder, size, true_labels=true, limit=limits.max_images)
    except PercvizError as exc:
        st.error(str(exc))
    return images, skipped
