"""Transferability: the source × target matrix, its files, the CLI's --transfer-to and the heat map."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_SPEC, make_tiny

from percviz.attacks import run_attack
from percviz.cli import main
from percviz.figures import transfer_figure
from percviz.images import load_sample
from percviz.models import Classifier
from percviz.transfer import resize_batch, top_predictions, transfer_matrix


def _sensitive(seed: int, size: int) -> Classifier:
    """A seeded tiny CNN with a bias-free ×10 head (PGD can move it), at input ``size``."""
    model = make_tiny(seed)
    with torch.no_grad():
        model.net.head[2].bias.zero_()
        model.net.head[2].weight.mul_(10)
    return Classifier(model.net, replace(TINY_SPEC, id=f"tiny{seed}_{size}", input_size=size))


@pytest.fixture(scope="module")
def pair() -> list[Classifier]:
    return [_sensitive(0, 32), _sensitive(1, 40)]


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, np.ndarray]]:
    return [(n, load_sample(n).pixels) for n in ("chelsea", "coffee", "rocket")]


PARAMS = {"eps": 0.08, "steps": 20}


def test_matrix_shape_diagonal_and_rows(pair, photos) -> None:
    m = transfer_matrix(pair, photos, "pgd", PARAMS, batch=3)
    assert m.fooling.shape == (2, 2) and not np.isnan(m.fooling).any()
    assert ((m.fooling >= 0) & (m.fooling <= 1)).all()
    assert len(m.rows) == 2 * 2 * len(photos)
    for i, source in enumerate(pair):  # the diagonal is the white-box rate: re-run and compare
        x = torch.stack(
            [
                torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1)
                for p in _fitted(photos, source.input_size)
            ]
        )
        res = run_attack("pgd", source, x, PARAMS)
        changed = (source(res.x_adv).argmax(1) != source(res.x).argmax(1)).float().mean().item()
        assert m.fooling[i, i] == pytest.approx(changed)
        assert m.white_box_success[source.spec.id] == pytest.approx(res.success.float().mean().item())
        assert (res.x_adv - res.x).abs().max() <= PARAMS["eps"] + 1e-6
    assert m.fooling[0, 0] == 1.0 and m.fooling[1, 1] == 1.0  # strict: white-box fools every photo
    for row in m.rows:
        assert row["fooled"] == (row["class_clean"] != row["class_adversarial"])
    counted = sum(r["fooled"] for r in m.rows if r["source"] == "tiny0_32" and r["target"] == "tiny1_40")
    assert m.fooled[0, 1] == counted


def _fitted(photos, size):
    from percviz.images import fit_to_model

    return [fit_to_model(p, size) for _, p in photos]


def test_files_and_figure(pair, photos, tmp_path) -> None:
    m = transfer_matrix(pair, photos[:2], "fgsm", {"eps": 0.05})
    json_path, csv_path = m.write(tmp_path, "t")
    data = json.loads(json_path.read_text())
    assert data["sources"] == ["tiny0_32", "tiny1_40"] and len(data["fooling_rate"]) == 2
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and set(rows[0]) == {
        "source",
        "target",
        "image",
        "class_clean",
        "class_adversarial",
        "fooled",
    }
    fig = transfer_figure(data)
    heat = fig.data[0]
    assert list(heat.x) == ["tiny0_32", "tiny1_40"] and np.asarray(heat.z).shape == (2, 2)
    assert heat.zmin == 0 and heat.zmax == 100


def test_cancel_keeps_nan_for_what_did_not_run(pair, photos) -> None:
    m = transfer_matrix(pair, photos, "fgsm", {"eps": 0.05}, batch=2, progress=lambda r: False)
    assert m.cancelled and np.isnan(m.fooling).all()


def test_resize_and_top_predictions(pair) -> None:
    x = torch.rand(1, 3, 32, 32)
    assert resize_batch(x, 32) is x
    big = resize_batch(x, 40)
    assert big.shape == (1, 3, 40, 40) and big.min() >= 0 and big.max() <= 1
    tops = top_predictions(pair, x, 5)
    assert set(tops) == {"tiny0_32", "tiny1_40"} and all(len(v) == 5 for v in tops.values())


def test_cli_transfer_to_writes_the_matrix(tmp_path) -> None:
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"m{seed}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_sensitive(seed, 32).net, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False)
        paths.append(path)
    norm = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
    out = tmp_path / "out"
    code = main([
        "evaluate", "--images", "sample:chelsea,coffee,rocket", "--attack", "pgd", "--param", "eps=0.08",
        "--param", "steps=20", "--model", f"file:{paths[0]}", *norm, "--transfer-to",
        f"file:{paths[1]}?mean=0.5,0.5,0.5&std=0.25,0.25,0.25", "--no-explain", "--quiet", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    data = json.loads((out / "transfer-pgd.json").read_text())
    assert len(data["sources"]) == 2 and data["fooling_rate"][0][0] == 1.0
    assert (out / "transfer-pgd.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["transfer"][0]["fooling_rate"] == data["fooling_rate"]
