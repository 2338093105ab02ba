"""The command-line contract of SPEC §7, run as a user would (subprocess) and in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percviz.cli import main
from percviz.images import fit_to_model, load_sample, to_uint8


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "percviz", *args], capture_output=True, text=True, timeout=300
    )


def test_models_lists_availability(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    lite = next(r for r in rows if r["id"] == "efficientnet_lite0")
    assert lite["available"]
    for r in rows:
        if not r["available"]:
            assert r["weight_file"].endswith(".pth") and r["folder"] in r["how_to_enable"]


def test_attacks_lists_schema(capsys) -> None:
    assert main(["attacks", "--json"]) == 0
    specs = {s["id"]: s for s in json.loads(capsys.readouterr().out)}
    names = [p["name"] for p in specs["pgd"]["params"]]
    assert names[:3] == ["eps", "steps", "step_size"]
    assert main(["attacks"]) == 0
    assert "pgd" in capsys.readouterr().out


def test_predict_json(capsys) -> None:
    assert main(["predict", "--image", "sample:coffee", "--top", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["top"][0]["label"] == "espresso" and len(payload["top"]) == 3


@pytest.fixture(scope="module")
def photo_224(tmp_path_factory) -> Path:
    """chelsea already at 224×224 as an 8-bit PNG: must be used as is, without resampling."""
    path = tmp_path_factory.mktemp("img") / "chelsea224.png"
    Image.fromarray(to_uint8(fit_to_model(load_sample("chelsea").pixels, 224))).save(path)
    return path


def test_attack_writes_every_file_and_replays_bit_for_bit(photo_224: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli(
        "attack",
        "--image",
        str(photo_224),
        "--attack",
        "pgd",
        "--param",
        "eps=0.0157",
        "--param",
        "steps=5",
        "--seed",
        "1",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("original.png", "adversarial.png", "original.npy", "adversarial.npy", "result.json"):
        assert (out / name).is_file(), name
    original = np.load(out / "original.npy")
    assert original.dtype == np.float32 and original.shape == (224, 224, 3)
    np.testing.assert_array_equal(original, np.asarray(Image.open(photo_224), dtype=np.float32) / 255.0)
    report = json.loads((out / "result.json").read_text())
    for key in (
        "prediction_before",
        "prediction_after",
        "success",
        "png_still_adversarial",
        "metrics",
        "constraints",
        "forward_passes",
        "backward_passes",
        "wall_time_s",
        "recipe",
    ):
        assert key in report, key
    assert report["constraints"]["linf"] <= 0.0157 + 1e-6
    assert report["recipe"]["versions"]["torch"] and report["recipe"]["device"] == "cpu"
    assert (
        report["prediction_after"][0]["index"] != report["prediction_before"][0]["index"]
        or not report["success"]
    )
    png = np.asarray(Image.open(out / "adversarial.png"))
    np.testing.assert_array_equal(png, to_uint8(np.load(out / "adversarial.npy")))

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(report["recipe"]))
    replay = tmp_path / "replay"
    proc = _cli("attack", "--recipe", str(recipe), "--out", str(replay))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(replay / "adversarial.npy"), np.load(out / "adversarial.npy"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["predict", "--image", "/nonexistent.png"], "No image file"),
        (["predict", "--image", "sample:nope"], "Unknown sample"),
        (["predict", "--model", "resnet9000", "--image", "sample:coffee"], "Unknown model"),
        (["predict", "--model", "vgg16", "--image", "sample:coffee"], "vgg16-397923af.pth"),
        (["attack", "--image", "sample:coffee", "--attack", "nope", "--out", "{tmp}"], "Unknown attack"),
        (
            ["attack", "--image", "sample:coffee", "--attack", "pgd", "--param", "eps=nan", "--out", "{tmp}"],
            "finite",
        ),
        (
            ["attack", "--image", "sample:coffee", "--attack", "pgd", "--param", "foo=1", "--out", "{tmp}"],
            "valid names",
        ),
        (
            ["attack", "--image", "sample:coffee", "--attack", "pgd", "--param", "eps", "--out", "{tmp}"],
            "NAME=VALUE",
        ),
        (["attack", "--recipe", "{tmp}/missing.json", "--out", "{tmp}"], "Cannot read recipe"),
        (["attack", "--attack", "pgd", "--out", "{tmp}"], "--image"),
    ],
)
def test_bad_input_one_line_nonzero(args: list[str], needle: str, tmp_path: Path, capsys) -> None:
    code = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("percviz: error:")
    assert needle in err


def test_corrupt_file_and_bad_recipe(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(["predict", "--image", str(bad)]) == 2
    assert "bad.jpg" in capsys.readouterr().err
    recipe = tmp_path / "r.json"
    recipe.write_text("{not json")
    assert main(["attack", "--recipe", str(recipe), "--out", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
