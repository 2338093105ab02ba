"""The command-line contract (subcommands, outputs, exit codes), run as a user would (subprocess) and in-process."""

from __future__ import annotations

import json
import math
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
    # Balda et al. 2019 Theorem 1's ρ = L/‖∇L‖_q: the L∞ estimate divides by ‖∇L‖₁ ≥ ‖∇L‖₂.
    assert 0 < payload["rho_linf"] <= payload["rho_l2"] < math.inf


@pytest.fixture(scope="module")
def photo_224(tmp_path_factory) -> Path:
    """chelsea already at 224×224 as an 8-bit PNG: must be used as is, without resampling."""
    path = tmp_path_factory.mktemp("img") / "chelsea224.png"
    Image.fromarray(to_uint8(fit_to_model(load_sample("chelsea").pixels, 224))).save(path)
    return path


@pytest.mark.slow
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


def _recipe(tmp: Path, name: str, **fields: object) -> str:
    base: dict[str, object] = {
        "model": "efficientnet_lite0",
        "image": {"sample": "chelsea"},
        "attack": "fgsm",
        "params": {"eps": 0.01},
        "seed": 0,
    }
    path = tmp / name
    path.write_text(json.dumps({**base, **fields}))
    return str(path)


def _hostile_files(tmp: Path) -> dict[str, str]:
    (tmp / "binary.json").write_bytes(bytes(range(256)) * 4)
    (tmp / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp / "utf16.json").write_bytes(json.dumps({"model": "x"}).encode("utf-16"))
    (tmp / "huge.json").write_text(" " * 1_100_000 + "{}")
    (tmp / "notimage.png").write_bytes(b"hello")
    (tmp / "folder").mkdir()
    (tmp / "afile").write_text("x")
    return {
        "seed_1e23": _recipe(tmp, "s1.json", seed=1e23),
        "seed_true": _recipe(tmp, "s2.json", seed=True),
        "seed_1.7": _recipe(tmp, "s3.json", seed=1.7),
        "seed_10^30": _recipe(tmp, "s4.json", seed=10**30),
        "crop_nan": _recipe(tmp, "c.json", crop_fraction="nan"),
        "steps_10^400": _recipe(tmp, "st.json", attack="pgd", params={"steps": 10**400}),
        "model_list": _recipe(tmp, "m.json", model=["a"]),
        "path_nul": _recipe(tmp, "n.json", image={"path": "a\u0000b"}),
    }


ATTACK = ["attack", "--image", "sample:chelsea", "--attack", "fgsm"]
HOSTILE: list[tuple[str, list[str], str]] = [
    ("crop nan", [*ATTACK, "--crop", "nan"], "--crop"),
    ("crop 0", [*ATTACK, "--crop", "0"], "--crop"),
    ("crop inf", [*ATTACK, "--crop", "inf"], "--crop"),
    ("device meta", [*ATTACK, "--device", "meta"], "--device"),
    ("device junk", [*ATTACK, "--device", "gpu7"], "--device"),
    ("device cuda:9", [*ATTACK, "--device", "cuda:9"], "--device cuda:9"),
    ("seed 10^30", [*ATTACK, "--seed", str(10**30)], "--seed"),
    ("seed 1e23", [*ATTACK, "--seed", "1e23"], "--seed"),
    ("seed -1", [*ATTACK, "--seed", "-1"], "--seed"),
    ("steps huge int", [*ATTACK[:-1], "pgd", "--param", "steps=" + "9" * 30], "'steps'"),
    ("steps 1e400", [*ATTACK[:-1], "pgd", "--param", "steps=1e400"], "'steps'"),
    ("eps nan", [*ATTACK, "--param", "eps=nan"], "'eps'"),
    ("unknown sample", ["attack", "--image", "sample:nope", "--attack", "fgsm"], "Unknown sample"),
    ("missing image", ["attack", "--image", "{tmp}/missing.png", "--attack", "fgsm"], "missing.png"),
    ("folder as image", ["attack", "--image", "{tmp}/folder", "--attack", "fgsm"], "folder"),
    ("not an image", ["attack", "--image", "{tmp}/notimage.png", "--attack", "fgsm"], "notimage.png"),
    ("unknown flag", [*ATTACK, "--nope"], "--nope"),
    ("no command", [], "command"),
    ("top 5000", ["predict", "--image", "sample:chelsea", "--top", "5000"], "--top"),
    ("top 0", ["predict", "--image", "sample:chelsea", "--top", "0"], "--top"),
    ("predict device meta", ["predict", "--image", "sample:chelsea", "--device", "meta"], "--device"),
    ("binary recipe", ["attack", "--recipe", "{tmp}/binary.json"], "UTF-8"),
    ("UTF-16 recipe", ["attack", "--recipe", "{tmp}/utf16.json"], "UTF-8"),
    ("nested recipe", ["attack", "--recipe", "{tmp}/nested.json"], "nested too deeply"),
    ("huge recipe", ["attack", "--recipe", "{tmp}/huge.json"], "at most"),
    ("figure binary recipe", ["figure", "--recipe", "{tmp}/binary.json", "--out", "{tmp}/f.png"], "UTF-8"),
    (
        "evaluate limit 0",
        ["evaluate", "--images", "sample:chelsea", "--attack", "fgsm", "--limit", "0"],
        "--limit",
    ),
    (
        "evaluate crop nan",
        ["evaluate", "--images", "sample:chelsea", "--attack", "fgsm", "--crop", "nan"],
        "--crop",
    ),
    ("out is a file", [*ATTACK, "--out", "{tmp}/afile"], "not a folder"),
    *[
        (f"recipe {key}", ["attack", "--recipe", f"{{recipe:{key}}}"], needle)
        for key, needle in (
            ("seed_1e23", "'seed'"),
            ("seed_true", "'seed'"),
            ("seed_1.7", "'seed'"),
            ("seed_10^30", "'seed'"),
            ("crop_nan", "'crop_fraction'"),
            ("steps_10^400", "'steps'"),
            ("model_list", "'model'"),
            ("path_nul", "NUL"),
        )
    ],
]


@pytest.mark.parametrize(("args", "needle"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_input_exits_2_with_one_sentence_and_writes_nothing(
    args: list[str], needle: str, tmp_path: Path, capsys
) -> None:
    """Every user error exits 2 with one line naming it; no --out folder is made."""
    recipes = _hostile_files(tmp_path)
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    argv = [recipes[a[8:-1]] if a.startswith("{recipe:") else a for a in argv]
    if argv and argv[0] in ("attack", "evaluate") and "--out" not in argv:
        argv += ["--out", str(out)]
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("percviz: error:"), err
    assert "Traceback" not in err and "Error:" not in err.removeprefix("percviz: error:"), err
    assert needle in err, err
    assert not out.exists()


def test_hostile_input_as_a_user_runs_it(tmp_path: Path) -> None:
    """The same in a fresh process: exit 2, one stderr line, no traceback, nothing written."""
    _hostile_files(tmp_path)
    for args in (["--recipe", str(tmp_path / "nested.json")], ["--image", "sample:chelsea", "--crop", "nan"]):
        proc = _cli("attack", *args, "--attack", "fgsm", "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not (tmp_path / "out").exists()


def test_recipes_record_the_percviz_version_and_commit() -> None:
    from percviz import __version__
    from percviz.recipes import environment_versions

    versions = environment_versions()
    assert versions["percviz"] == __version__ != "absent"
    if (Path(__file__).resolve().parent.parent / ".git").exists():
        assert len(versions["percviz_commit"].removesuffix("-dirty")) == 40
