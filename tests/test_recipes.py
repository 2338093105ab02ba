"""Recipes (percviz.recipes): a JSON round trip that keeps every value (inf included), and one
sentence for every malformed file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from percviz.errors import RecipeError
from percviz.recipes import MAX_RECIPE_BYTES, ImageRef, Recipe, file_sha256


def test_round_trip_keeps_every_field_and_infinity(tmp_path: Path) -> None:
    recipe = Recipe(
        model="efficientnet_lite0",
        image=ImageRef(sample="chelsea"),
        attack="fast_lpa",
        params={"bound": 0.25, "kappa": math.inf, "steps": 10, "target": None},
        seed=7,
        crop_fraction=0.875,
        device="cpu",
    )
    path = tmp_path / "r.json"
    recipe.save(path)
    raw = json.loads(path.read_text())
    assert raw["params"]["kappa"] == "inf"  # strict JSON: no Infinity token
    assert raw["versions"]["percviz"]  # the environment is recorded
    back = Recipe.load(path)
    assert back.params == recipe.params and math.isinf(back.params["kappa"])
    assert (back.model, back.image, back.attack, back.seed, back.crop_fraction, back.device) == (
        recipe.model,
        recipe.image,
        recipe.attack,
        recipe.seed,
        recipe.crop_fraction,
        recipe.device,
    )
    # result.json embeds the recipe under "recipe": it loads too.
    (tmp_path / "result.json").write_text(json.dumps({"recipe": raw}))
    assert Recipe.load(tmp_path / "result.json").params == recipe.params


def test_image_refs_hash_files_and_need_exactly_one_source(tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(b"not really a png, but hashed all the same")
    ref = ImageRef.parse(str(photo))
    assert ref.sha256 == file_sha256(photo) and ref.describe() == str(photo)
    assert ImageRef.parse("sample:coffee") == ImageRef(sample="coffee")
    with pytest.raises(RecipeError, match="exactly one"):
        ImageRef()
    with pytest.raises(RecipeError, match="exactly one"):
        ImageRef(sample="chelsea", path=str(photo))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[1, 2]", "JSON object"),
        ('{"model": "m"}', "lacks image, attack"),
        ('{"model": "m", "image": "chelsea", "attack": "fgsm"}', "'image' must be an object"),
        ('{"model": "m", "image": {"sample": "chelsea"}, "attack": "fgsm", "params": [1]}', "'params'"),
        ('{"model": "m", "image": {"sample": "chelsea"}, "attack": "fgsm", "device": 3}', "'device'"),
        ('{"model": "m", "image": {"sample": "chelsea"}, "attack": "fgsm", "seed": -1}', "seed"),
        ('{"model": "m", "image": {"sample": "chelsea"}, "attack": "fgsm", "crop_fraction": 2}', "crop"),
        ("{not json", "not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_recipes_get_one_sentence(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RecipeError, match=needle) as caught:
        Recipe.load(path)
    assert "\n" not in str(caught.value)


def test_unreadable_oversized_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="Cannot read recipe"):
        Recipe.load(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_RECIPE_BYTES + 1))
    with pytest.raises(RecipeError, match="at most"):
        Recipe.load(big)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RecipeError, match="UTF-8"):
        Recipe.load(binary)


STORED = Path(__file__).resolve().parent / "data" / "recipes"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pgd", "fpgap", "reg"])
def test_a_stored_recipe_replays_bit_identically(name: str, tmp_path: Path) -> None:
    """Recipes written by ``percviz attack`` (tests/data/recipes: PGD with a random start and seed 7
    on chelsea, FPGAP on coffee, linear regression attack on the autoencoder) replay to the same
    adversarial array, bit for bit, whatever has changed in the code since."""
    import hashlib

    from percviz.cli import main

    expected = json.loads((STORED / "expected.json").read_text())[name]
    assert main(["attack", "--recipe", str(STORED / f"{name}.json"), "--out", str(tmp_path)]) == 0
    adversarial = np.load(tmp_path / "adversarial.npy")
    assert list(adversarial.shape) == expected["shape"]
    digest = hashlib.sha256(np.ascontiguousarray(adversarial).tobytes()).hexdigest()
    assert digest == expected["adversarial_sha256"]
