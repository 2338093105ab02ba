"""Streamlit helpers for models: "your model" in the picker, other models' top-5, the transfer matrix.

Own models are offered only where the limits allow them (local mode); an uploaded file is kept in
``~/.cache/percviz/uploads`` under its SHA-256 (never in the repository) and loaded by the same
checks as the command line (:mod:`percviz.models.custom`): pickles refused, ``N×C`` logits
required, one sentence for every failure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from percviz.errors import PercvizError
from percviz.evaluation import EvalImage, RunSpec
from percviz.figures import transfer_figure
from percviz.jsonsafe import json_safe
from percviz.limits import current_limits
from percviz.models import Classifier, all_model_status
from percviz.models.custom import model_ref
from percviz.transfer import TransferMatrix, top_predictions, transfer_matrix
from ui import jobs, views
from ui.common import cached_model, model_choice

UPLOAD_DIR = Path.home() / ".cache" / "percviz" / "uploads"
MODEL_TYPES = ["pt", "ts", "onnx", "safetensors", "pth", "bin"]
OWN = "Your model"


def model_choice_with_own(key: str) -> Classifier | None:
    """The zoo picker, plus (local mode) a "Your model" source: a path on this machine or an upload."""
    if not current_limits().allow_custom_models:
        return model_choice(key)
    source = st.radio("Model source", ["Zoo", OWN], horizontal=True, key=f"{key}_own_src")
    if source == "Zoo":
        return model_choice(key)
    return _own_model(key)


def _own_model(key: str) -> Classifier | None:
    how = st.radio("From", ["Path on this machine", "Upload"], horizontal=True, key=f"{key}_own_how")
    if how == "Upload":
        up = st.file_uploader("TorchScript, ONNX or checkpoint", type=MODEL_TYPES, key=f"{key}_own_file")
        arch = st.text_input(
            "Architecture (checkpoints only)",
            key=f"{key}_own_arch",
            placeholder="resnet18, timm:convnext_tiny, torchvision:mobilenet_v3_small",
        )
        if up is None:
            st.caption("TorchScript (.pt/.ts) and ONNX are recognised from the content; pickles are refused.")
            return None
        path = _keep_upload(up.getvalue(), up.name)
        base = f"{arch.strip()}@{path}" if arch.strip() else f"file:{path}"
    else:
        base = st.text_input(
            "Model",
            key=f"{key}_own_ref",
            placeholder="file:/models/net.onnx · resnet18@/ckpt/best.safetensors · hf:org/name",
            help="file:PATH (TorchScript or ONNX), ARCH@PATH (timm/torchvision + checkpoint), "
            "hf:REPO_ID (Hugging Face cache).",
        ).strip()
        if not base:
            return None
        if "@" not in base and not base.startswith(("file:", "hf:")):
            base = f"file:{base}"
    with st.expander("Input and labels (inferred when empty)"):
        size = st.number_input("Input size (0 = infer)", 0, 2048, 0, key=f"{key}_own_size")
        mean = st.text_input("Mean a,b,c (empty = ImageNet)", key=f"{key}_own_mean").strip()
        std = st.text_input("Std a,b,c (empty = ImageNet)", key=f"{key}_own_std").strip()
        labels = st.file_uploader(
            "Class names (one per line, or JSON)", type=["txt", "json"], key=f"{key}_own_lab"
        )
        cam = st.text_input("GradCAM++ layer (empty = automatic)", key=f"{key}_own_cam").strip()
    try:
        ref = model_ref(
            base,
            labels=str(_keep_upload(labels.getvalue(), labels.name)) if labels else None,
            input_size=int(size) or None,
            mean=mean or None,
            std=std or None,
            cam_layer=cam or None,
        )
        model = cached_model(ref)
    except PercvizError as exc:
        st.error(str(exc))
        return None
    st.caption(
        f"{model.spec.title}: {model.spec.num_classes} classes, input {model.input_size}×{model.input_size}"
        + (f"; GradCAM++ at {model.spec.cam_layer}" if model.spec.cam_layer else f"; {model.spec.cam_note}")
    )
    return model


def _keep_upload(data: bytes, name: str) -> Path:
    """Store an upload under its content hash, keeping the user's file name (a model is shown by
    it, never by the server's path): ``UPLOAD_DIR/<sha256[:32]>/<safe name>``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")[:64] or "upload"
    suffix = re.sub(r"[^A-Za-z0-9.]+", "", Path(name).suffix.lower())[:12]
    path = UPLOAD_DIR / hashlib.sha256(data).hexdigest()[:32] / f"{stem}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def _zoo_models() -> list[str]:
    return [s.spec.id for s in all_model_status() if s.available]


def _short_title(model_id: str) -> str:
    """A zoo model's title without its weights note ("EfficientNet-Lite1", "ResNet-50"); else its id."""
    titles = {s.spec.id: s.spec.title for s in all_model_status()}
    return titles.get(model_id, model_id).split(" (", 1)[0]


def other_models_top5(entry: Any, model: Classifier, key: str) -> None:
    """The other models' top-5 on this result's adversarial image (does the example transfer?)."""
    others = [m for m in _zoo_models() if m != model.spec.id]
    if not others:
        return
    st.subheader("Other models on the adversarial image")
    hosted = current_limits().hosted  # there, each extra model is opt-in: it runs outside the queue
    chosen = st.multiselect(
        "Models",
        others,
        default=[] if hosted else others[:3],
        format_func=_short_title,
        key=f"{key}_transfer_models",
        help="Each chosen model classifies the adversarial image (a few forward passes per model).",
    )
    if not chosen:
        return
    store = st.session_state.setdefault(f"pv_{key}_top5", {})
    ident = (entry.key, tuple(chosen))
    if ident not in store:
        try:
            models = [cached_model(m) for m in chosen]
            x, x_adv = entry.result.x[:1].detach().cpu(), entry.result.x_adv[:1].detach().cpu()
            store.clear()
            store[ident] = (top_predictions(models, x, 1), top_predictions(models, x_adv, 5))
        except PercvizError as exc:
            st.error(str(exc))
            return
    clean, adv = store[ident]
    cols = st.columns(len(chosen))
    for col, name in zip(cols, chosen, strict=True):
        before, after = clean[name][0], adv[name]
        moved = after[0].index != before.index
        col.markdown(
            f"**{_short_title(name)}** — {'fooled' if moved else 'not fooled'} (clean: {before.label})"
        )
        col.dataframe(
            {"class": [p.label for p in after], "probability": [f"{p.probability:.1%}" for p in after]},
            hide_index=True,
            width="stretch",
        )


def transfer_section(
    key: str, model: Classifier, images: Sequence[EvalImage], runs: Sequence[RunSpec], seed: int, batch: int
) -> None:
    """Evaluate's transfer matrix: examples made on each chosen model, classified by each of them."""
    name = f"{key}_transfer"
    with st.expander("Transferability: source × target fooling rates", expanded=False):
        zoo = _zoo_models()
        default = list(dict.fromkeys([model.spec.id, *zoo]))[:3] if model.spec.id in zoo else zoo[:3]
        chosen = st.multiselect(
            "Models (sources and targets)",
            zoo,
            default=default,
            format_func=_short_title,
            key=f"{name}_models",
        )
        attacks = list(dict.fromkeys(r.attack for r in runs))
        attack = (
            st.selectbox("Attack (its first parameter set)", attacks, key=f"{name}_attack")
            if attacks
            else None
        )
        go = st.button(
            "Compute transfer matrix",
            key=f"{name}_run",
            icon=":material/grid_on:",
            disabled=not chosen or not images or attack is None or jobs.running(name),
        )
        if go and attack is not None:
            params = dict(next(r.params for r in runs if r.attack == attack))
            pairs = [(im.name, np.asarray(im.pixels)) for im in images]
            models = [cached_model(m) for m in chosen]

            def work(progress: Any) -> TransferMatrix:
                return transfer_matrix(
                    models, pairs, attack, params, seed=seed, batch=batch, progress=progress
                )

            jobs.submit(
                name, work, f"transfer matrix: {attack} on {len(chosen)} models × {len(pairs)} images"
            )
        jobs.follow(name, lambda r, m: st.session_state.__setitem__(f"pv_{name}", r.as_dict()))
        result = st.session_state.get(f"pv_{name}")
        if result is None:
            st.caption(
                "Each image is attacked on every chosen model, and each adversarial image is classified by "
                "every chosen model: rows = source (attacked), columns = target; the diagonal is white-box."
            )
            return
        titles = {m: _short_title(m) for m in [*result["sources"], *result["targets"]]}
        views.show((name, id(result)), lambda: transfer_figure(result, titles))
        st.caption(
            f"Fooling rate = {result['definition']}. White-box success (bounds included): "
            + ", ".join(f"{titles.get(k, k)} {v:.0%}" for k, v in result["white_box_success"].items())
            + "."
        )
        st.download_button(
            "Transfer matrix JSON",
            data=lambda: json.dumps(json_safe(result), indent=2),
            file_name="percviz-transfer.json",
            mime="application/json",
            on_click="ignore",
            icon=":material/download:",
            key=f"{name}_json",
        )
