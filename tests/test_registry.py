"""The attack registry, its parameter schemas and the run template."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from percviz.attacks import get_attack, registry, run_attack
from percviz.attacks.losses import best_other, cross_entropy, margin
from percviz.attacks.schema import Param
from percviz.errors import ParameterError, UnknownIdError


def test_registry_entries_are_complete() -> None:
    attacks = registry()
    assert {"fgsm", "pgd"} <= set(attacks)
    for spec in attacks.values():
        assert spec.title and spec.source and spec.summary and spec.formula
        assert spec.family and spec.params
        for p in spec.params:
            assert p.help, f"{spec.id}.{p.name} has no help text"
        spec.validate({})
        for preset in spec.presets.values():
            spec.validate(preset)


def test_shared_parameter_names_mean_the_same_thing() -> None:
    """A name used by several attacks keeps one kind (``p``: a choice or any float ≥ 1)."""
    kinds: dict[str, set[str]] = {}
    for spec in registry().values():
        for p in spec.params:
            assert p.name.isidentifier() and p.name.islower(), f"{spec.id}.{p.name}"
            kinds.setdefault(p.name, set()).add(p.kind)
    mixed = {n: k for n, k in kinds.items() if len(k) > 1 and not (n == "p" and k <= {"choice", "float"})}
    assert not mixed, f"one name, several kinds: {mixed}"


def test_unknown_attack_and_parameter() -> None:
    with pytest.raises(UnknownIdError, match="pgd"):
        get_attack("pgdd")
    with pytest.raises(ParameterError, match="valid names: eps, steps"):
        get_attack("pgd").validate({"epsilon": 0.1})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", "finite"),
        (float("inf"), "finite"),
        (-0.1, r"\[0.0, 1.0\]"),
        (2, r"\[0.0, 1.0\]"),
        ("abc", "number"),
        (True, "number"),
    ],
)
def test_float_validation(value: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        get_attack("pgd").validate({"eps": value})


def test_int_bool_choice_class_validation() -> None:
    spec = get_attack("pgd")
    assert spec.validate({"steps": "5"})["steps"] == 5
    with pytest.raises(ParameterError, match="integer"):
        spec.validate({"steps": 2.5})
    assert spec.validate({"random_start": "yes"})["random_start"] is True
    with pytest.raises(ParameterError, match="true or false"):
        spec.validate({"random_start": "maybe"})
    with pytest.raises(ParameterError, match="ce, cw"):
        spec.validate({"loss": "mse"})
    assert spec.validate({"target": "none"})["target"] is None
    assert spec.validate({"target": "285"})["target"] == 285
    with pytest.raises(ParameterError):
        spec.validate({"target": 1000})


def test_allow_inf_param() -> None:
    p = Param(name="p", kind="float", default=2.0, low=1.0, high=math.inf, allow_inf=True, help="norm")
    assert p.validate("inf") == math.inf
    with pytest.raises(ParameterError):
        p.validate("-inf")


def test_losses() -> None:
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 1])
    torch.testing.assert_close(best_other(z, y), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(margin(z, y), torch.tensor([-1.0, -4.0]))
    torch.testing.assert_close(margin(z, y, kappa=-2.0), torch.tensor([-2.0, -4.0]))
    torch.testing.assert_close(margin(z, y, target=2), torch.tensor([-1.0, -4.0]))
    assert (cross_entropy(z, y) > 0).all() and (cross_entropy(z, y, target=2) < 0).all()


def test_run_template_result(tiny, photos32) -> None:
    x = photos32.clone()
    result = run_attack("pgd", tiny, x, {"eps": 0.03, "steps": 4, "step_size": 0.01}, seed=3)
    torch.testing.assert_close(x, photos32)  # input untouched
    assert result.x_adv.shape == x.shape and result.success.shape == (3,)
    assert result.forward_passes == 1 + 4 + 1 and result.backward_passes == 4
    assert len(result.history) == 4 and result.history[-1]["iteration"] == 4
    assert max(result.constraints["linf"]) <= 0.03 + 1e-6
    assert set(result.constraints) >= {"linf", "l2", "l0", "s1", "s2", "ssim"}
    assert result.wall_time > 0 and result.device == "cpu" and not result.cancelled
    assert torch.equal(result.labels, tiny(photos32).argmax(1))


def test_seed_determinism_and_random_start(tiny, photos32) -> None:
    params = {"eps": 0.05, "steps": 3, "step_size": 0.01, "random_start": True}
    a = run_attack("pgd", tiny, photos32, params, seed=7)
    b = run_attack("pgd", tiny, photos32, params, seed=7)
    c = run_attack("pgd", tiny, photos32, params, seed=8)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_cancellation_through_progress(tiny, photos32) -> None:
    seen: list[int] = []

    def progress(record: dict) -> bool:
        seen.append(record["iteration"])
        return record["iteration"] < 2

    result = run_attack("pgd", tiny, photos32, {"steps": 50}, progress=progress)
    assert result.cancelled and seen == [1, 2] and result.backward_passes == 2


def test_targeted_success_definition(tiny, photos32) -> None:
    target = int(tiny(photos32).argmax(1)[0])
    result = run_attack("pgd", tiny, photos32, {"target": target, "steps": 1, "eps": 0.0})
    assert bool(result.success[0])  # already predicted as the target


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(3, 32, 32),
        torch.rand(1, 1, 32, 32),
        torch.full((1, 3, 16, 16), float("nan")),
        torch.full((1, 3, 16, 16), 1.5),
        torch.zeros(1, 3, 16, 16, dtype=torch.uint8),
    ],
)
def test_bad_input_batches_refused(tiny, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        run_attack("fgsm", tiny, bad)


def test_real_model_pgd_fools_every_photo(lite0, photos224) -> None:
    result = run_attack("pgd", lite0, photos224, {"eps": 4 / 255, "steps": 10, "step_size": 1 / 255})
    assert result.success.all()
    assert max(result.constraints["linf"]) <= 4 / 255 + 1e-6
    assert min(result.constraints["ssim"]) > 0.9


def test_attack_modules_lists_exactly_the_modules_that_register_attacks():
    """load_all imports ATTACK_MODULES; a family left out of it would silently vanish from the app."""
    import ast
    import pkgutil

    import percviz.attacks as attacks_pkg
    from percviz.attacks import ATTACK_MODULES, registry

    folder = Path(attacks_pkg.__file__).parent
    registering = set()
    for info in pkgutil.iter_modules([str(folder)]):
        if info.ispkg:  # solvers/: numerical routines, no attacks
            continue
        tree = ast.parse((folder / f"{info.name}.py").read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "register"]
        if calls and info.name != "__init__":
            registering.add(info.name)
    assert registering == set(ATTACK_MODULES)
    modules = {spec.fn.__module__.rpartition(".")[2] for spec in registry().values()}
    assert modules == set(ATTACK_MODULES)
