"""Hostile and careless inputs on the newer surfaces: a model whose output is not finite, a torn or
binary-damaged rows.jsonl on resume, and JSON that must stay strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from percviz.attacks import run_attack
from percviz.attacks.regression_run import run_regression_attack
from percviz.cli import main
from percviz.errors import ModelOutputError
from percviz.evaluation import RowStore
from percviz.jsonsafe import dumps
from percviz.models import Classifier


class _Times(torch.nn.Module):
    """A classifier (or image-to-image model) whose output is multiplied by ``factor`` (NaN, inf)."""

    def __init__(self, factor: float, image_out: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.head = torch.nn.Linear(3, 10)
        self.factor = factor
        self.image_out = image_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.image_out:
            return y * self.factor
        return self.head(y.mean(dim=(2, 3))) * self.factor


@pytest.mark.parametrize("factor", [float("nan"), float("inf")])
def test_a_model_with_non_finite_output_is_refused_in_one_sentence(
    tmp_path: Path, factor: float, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ts_bad.pt"
    torch.jit.script(_Times(factor).eval()).save(str(path))
    code = main(
        ["attack", "--model", f"file:{path}", "--input-size", "32", "--image", "sample:chelsea",
         "--attack", "fgsm", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "non-finite outputs" in err, err
    assert not (tmp_path / "out" / "result.json").exists()


def test_the_templates_check_the_output_before_attacking(tiny: Classifier, photos32: torch.Tensor) -> None:
    class NaNWrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny
            self.spec = tiny.spec
            self.register_buffer("anchor", torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * float("nan")

    with pytest.raises(ModelOutputError, match="non-finite"):
        run_attack("fgsm", NaNWrapped(), photos32[:1], {"eps": 0.01})
    from percviz.models.regression import Regressor, RegressorSpec

    spec = RegressorSpec(id="nan", title="nan-out", source="a test", input_size=32, output="image")
    regressor = Regressor(_Times(float("nan"), image_out=True), spec)
    with pytest.raises(ModelOutputError, match="nan-out"):
        run_regression_attack("reg_random", regressor, photos32[:1], {"eps": 0.5})


def test_json_is_strict_whatever_the_numbers() -> None:
    text = dumps({"nan": float("nan"), "inf": float("inf"), "t": torch.tensor([1.0, float("-inf")])})
    assert json.loads(text) == {"nan": None, "inf": "inf", "t": [1.0, "-inf"]}
    assert "NaN" not in text and "Infinity" not in text


def test_resume_skips_damaged_lines_and_appends_on_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    good = [{"key": f"k{i}", "value": i} for i in range(3)]
    text = "".join(json.dumps(r) + "\n" for r in good[:2]) + json.dumps(good[2])[:-7]  # torn last line
    path.write_bytes(text.encode() + b"\n\xff\xfe garbage\n" + b'{"key": "k2", "val')
    store = RowStore(path)
    assert set(store.rows) == {"k0", "k1"} and store.skipped == 3
    store.append(good[2])
    again = RowStore(path)
    assert set(again.rows) == {"k0", "k1", "k2"} and again.rows["k2"] == good[2]
    assert again.skipped == 3  # the damaged lines stay damaged; no valid row was lost or glued
    again.append({"key": "k3", "value": 3})
    assert set(RowStore(path).rows) == {"k0", "k1", "k2", "k3"}


def test_text_files_are_read_with_a_size_cap(tmp_path: Path) -> None:
    """``/dev/zero`` as a labels file or a recipe is refused after reading the cap, not forever."""
    from percviz.errors import ModelFileError, ParameterError, RecipeError
    from percviz.evaluation.data import read_true_labels
    from percviz.models.custom import read_labels
    from percviz.recipes import Recipe

    with pytest.raises(ModelFileError, match="larger than"):
        read_labels("/dev/zero", 10)
    with pytest.raises(RecipeError, match="larger than"):
        Recipe.load("/dev/zero")
    with pytest.raises(ParameterError, match="larger than"):
        read_true_labels("/dev/zero")
    binary = tmp_path / "labels.txt"
    binary.write_bytes(b"\xff\xfe\x00cat\n")
    with pytest.raises(ModelFileError, match="not UTF-8"):
        read_labels(str(binary), 1)


def test_evaluate_runs_an_own_torchscript_model_and_checks_transfer_names_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An own model without feature layers is evaluated (its lpips_self is null, not a refusal of the
    whole run); an unknown ``--transfer-to`` name is refused before anything is computed."""
    path = tmp_path / "ts_ok.pt"
    torch.jit.script(_Times(1.0).eval()).save(str(path))
    out = tmp_path / "eval"
    base = ["evaluate", "--model", f"file:{path}", "--input-size", "32", "--images", "sample:chelsea,coffee",
            "--attack", "fgsm", "--no-explain", "--quiet", "--out", str(out)]  # fmt: skip
    code = main([*base, "--transfer-to", "nosuch"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nosuch" in err and len(err.splitlines()) == 1, err
    assert not (out / "rows.jsonl").exists()
    assert main(base) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["lpips_self"] is None for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert "NaN" not in (out / "summary.json").read_text() and summary


class _Heavy(torch.nn.Module):
    """An own classifier holding about 40 MB of weights (a wide linear head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.wide = torch.nn.Linear(8, 1_250_000)
        self.head = torch.nn.Linear(1_250_000, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.wide(self.conv(x).mean(dim=(2, 3))))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")
    return 0.0


@pytest.mark.slow  # ten 90 MB models: about 15 s and 1 GB
def test_own_models_are_cached_least_recently_used_and_memory_comes_back(tmp_path: Path) -> None:
    """Ten new own-model files, each loaded and attacked once: at most MAX_OWN_MODELS stay cached and
    RSS stays near its level after the first few instead of growing by ~40 MB per model."""
    import gc

    from percviz.models import classifier as cls
    from percviz.models import load_model
    from percviz.serving.memory import release_free_memory

    x = torch.rand(1, 3, 32, 32)
    paths = []
    for i in range(10):
        torch.manual_seed(i)
        path = tmp_path / f"heavy_{i}.pt"
        torch.jit.script(_Heavy().eval()).save(str(path))
        paths.append(path)
    levels = []
    for path in paths:
        model = load_model(f"file:{path}?input_size=32")
        run_attack("fgsm", model, x, {"eps": 0.01})
        del model
        gc.collect()
        release_free_memory()
        levels.append(_rss_mb())
    assert len(cls._OWN) == cls.MAX_OWN_MODELS
    assert cls.model_bytes(next(iter(cls._OWN.values()))) > 40e6
    growth = levels[-1] - levels[cls.MAX_OWN_MODELS]
    assert growth < 60, f"RSS after each model (MB): {[round(v) for v in levels]}"
    print("RSS after each of 10 own models (MB):", [round(v) for v in levels])


def test_a_bad_repository_id_or_an_absent_device_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--model", "hf:../../etc", "--image", "sample:chelsea"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a Hugging Face repository id" in err and len(err.splitlines()) == 1, err
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "model": "efficientnet_lite0",
                "image": {"sample": "chelsea"},
                "attack": "fgsm",
                "params": {},
                "seed": 0,
                "device": "cuda:99",
            }
        )
    )
    assert main(["attack", "--recipe", str(recipe), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Device cuda:99" in err and len(err.splitlines()) == 1, err


class _Normalised(torch.nn.Module):
    """A classifier whose export holds Constant, Shape, Reshape and ReduceMean nodes (opset 20)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv((x - 0.5) / 0.25)).mean(dim=(2, 3))
        return self.head(y.reshape(y.shape[0], -1))


def _export_default(net: torch.nn.Module, path: Path) -> None:
    """``torch.onnx.export`` as users call it today (TorchScript exporter, its default opset)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )  # fmt: skip


def test_onnx_of_the_current_default_opset_loads_and_computes_the_same(tmp_path: Path) -> None:
    import onnx

    from percviz.models import load_model

    net = _Normalised().eval()
    path = tmp_path / "default.onnx"
    _export_default(net, path)
    opset = max(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 18, opset  # the opset onnx2torch alone refuses (Constant-19, ReduceMean-18)
    model = load_model(f"file:{path}?input_size=32", "cpu")
    assert "lowering opset" in model.spec.source and "reference evaluator" in model.spec.source
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
        got = model.net(x)  # the converted network itself (no normalisation around it)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_onnx_external_data_outside_its_folder_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    path = tmp_path / "model" / "ext.onnx"
    path.parent.mkdir()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.onnx.export(net.eval(), (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=13)
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../../etc/passwd"
    onnx.save(proto, str(path))
    code = main(["predict", "--model", f"file:{path}", "--input-size", "32", "--image", "sample:chelsea"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "cannot be read" in err and "points outside the directory" in err, err


class _Greedy(torch.nn.Module):
    """A classifier that asks for 64 TiB in its forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        waste = torch.zeros(1 << 22, 1 << 22)
        return self.head(x.mean(dim=(2, 3))) + waste.sum()


def test_a_model_that_allocates_too_much_is_one_plain_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "greedy.pt"
    torch.jit.script(_Greedy().eval()).save(str(path))
    code = main(["predict", "--model", f"file:{path}", "--input-size", "32", "--image", "sample:chelsea"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "more memory than this machine has" in err, err
    assert "TorchScript" not in err and "Traceback" not in err and "input_size" not in err, err


def test_empty_options_and_folders_are_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["predict", "--model", "efficientnet_lite0", "--cam-layer", "", "--image", "sample:chelsea"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.endswith("Model option cam_layer is empty; give a value or leave the option out."), err
    assert main(["predict", "--model", f"resnet18@{tmp_path}", "--image", "sample:chelsea"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a folder" in err and "does not exist" not in err, err


def test_a_regression_attack_leaves_stderr_empty(tmp_path: Path) -> None:
    """torch.func.jvp's first call printed torch's "torch.jit.script is deprecated" FutureWarning."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "percviz", "attack", "--model", "autoencoder", "--attack", "reg_quad",
         "--param", "steps=3", "--image", "sample:chelsea", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
