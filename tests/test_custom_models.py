"""Own models: TorchScript, ONNX, ARCH@checkpoint, Hugging Face cache; refusals with one sentence."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SPEC, make_tiny
from torch import nn

from percviz.analysis.explain import gradcam_plus_plus
from percviz.cli import main
from percviz.errors import ModelFileError, PercvizError
from percviz.models import build_classifier, load_model, predict
from percviz.models.custom import model_ref, parse_model_ref, sniff_format
from percviz.models.probe import choose_cam_layer, probe

TINY_NORM = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]


def sensitive_tiny() -> nn.Module:
    """The seeded tiny CNN with a bias-free, ×10 head, so that PGD can move its decision."""
    net = make_tiny().net
    with torch.no_grad():
        net.head[2].bias.zero_()
        net.head[2].weight.mul_(10)
    return net


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """The seeded tiny CNN as TorchScript, ONNX, a pickle, a state dict and safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("exports")
    net = sensitive_tiny()
    paths = {
        name: folder / name for name in ("tiny.pt", "tiny.onnx", "whole.pt", "state.pt", "w.safetensors")
    }
    torch.jit.script(net).save(str(paths["tiny.pt"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.rand(1, 3, 32, 32),),
            str(paths["tiny.onnx"]),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
    torch.save(net, paths["whole.pt"])
    torch.save(net.state_dict(), paths["state.pt"])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(paths["w.safetensors"]))
    return paths


def _ref(path: Path, **options: object) -> str:
    return model_ref(f"file:{path}", mean="0.5,0.5,0.5", std="0.25,0.25,0.25", **options)  # type: ignore[arg-type]


def test_format_is_read_from_content_not_name(exports, tmp_path) -> None:
    assert sniff_format(exports["tiny.pt"]) == "torchscript"
    assert sniff_format(exports["tiny.onnx"]) == "onnx"
    assert sniff_format(exports["whole.pt"]) == "torch-pickle"
    assert sniff_format(exports["w.safetensors"]) == "safetensors"
    swapped = tmp_path / "actually_onnx.pt"
    swapped.write_bytes(exports["tiny.onnx"].read_bytes())
    assert sniff_format(swapped) == "onnx"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08not a model at all")
    with pytest.raises(ModelFileError, match="neither a TorchScript archive nor an ONNX model"):
        build_classifier(f"file:{junk}", "cpu")


@pytest.mark.parametrize("name", ["tiny.pt", "tiny.onnx"])
def test_exports_match_the_original_network(exports, photos32, name: str) -> None:
    model = build_classifier(_ref(exports[name], input_size=32), "cpu")
    reference = sensitive_tiny()
    expected = reference((photos32 - 0.5) / 0.25)
    torch.testing.assert_close(model(photos32), expected, atol=1e-4, rtol=1e-5)
    assert model.input_size == 32 and model.spec.num_classes == 10
    assert model.labels == [f"class {i}" for i in range(10)]
    assert not any(p.requires_grad for p in model.parameters())
    x = photos32.clone().requires_grad_(True)
    model(x)[:, 3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients flow (ONNX via onnx2torch)


def test_onnx_infers_input_size_and_gets_gradcam(exports, photos32) -> None:
    assert build_classifier(_ref(exports["tiny.onnx"]), "cpu").input_size == 32  # from the graph input
    fixed = exports["tiny.onnx"].with_name("fixed.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(sensitive_tiny(), (torch.rand(1, 3, 40, 40),), str(fixed), dynamo=False)
    model = build_classifier(_ref(fixed), "cpu")
    assert model.input_size == 40
    assert model.spec.cam_layer.endswith("Relu") and model.spec.cam_layer.startswith("features")
    maps = gradcam_plus_plus(model, torch.nn.functional.interpolate(photos32, size=40))
    assert maps.cam.shape == (3, 40, 40) and np.isfinite(maps.cam).all()


@pytest.mark.parametrize("name", ["tiny.pt", "tiny.onnx"])
def test_cli_attacks_an_exported_model_end_to_end(exports, tmp_path, name: str) -> None:
    out = tmp_path / "out"
    eps = 0.1
    args = ["attack", "--model", f"file:{exports[name]}", "--input-size", "32", *TINY_NORM]
    args += ["--image", "sample:chelsea", "--attack", "pgd", "--param", f"eps={eps}", "--out", str(out)]
    assert main([*args, "--param", "steps=20"]) == 0
    report = json.loads((out / "result.json").read_text())
    assert report["success"] is True
    assert report["prediction_before"][0]["label"].startswith("class ")
    original = np.load(out / "original.npy")
    adversarial = np.load(out / "adversarial.npy")
    assert original.shape == (32, 32, 3)
    assert np.abs(adversarial - original).max() <= eps + 1e-6
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    recipe = json.loads((out / "recipe.json").read_text()) if (out / "recipe.json").exists() else report
    assert f"file:{exports[name].resolve()}" in json.dumps(recipe)


def test_pickle_is_refused_with_one_line(exports, capsys) -> None:
    code = main(["predict", "--model", f"file:{exports['whole.pt']}", "--image", "sample:chelsea"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "pickled PyTorch file" in err and "never loads" in err
    with pytest.raises(ModelFileError, match="pickled"):  # also as ARCH@PATH: weights_only refuses it
        build_classifier(f"resnet18@{exports['whole.pt']}", "cpu")


def test_state_dict_needs_an_architecture(exports) -> None:
    with pytest.raises(ModelFileError, match="ARCH@"):
        build_classifier(f"file:{exports['state.pt']}", "cpu")
    with pytest.raises(ModelFileError, match="ARCH@"):
        build_classifier(f"file:{exports['w.safetensors']}", "cpu")


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_arch_at_checkpoint(tmp_path, fmt: str) -> None:
    import torchvision
    from safetensors.torch import save_file

    with torch.random.fork_rng():
        torch.manual_seed(0)
        reference = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    path = tmp_path / f"ckpt.{fmt}"
    if fmt == "pth":
        torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    else:
        save_file(reference.state_dict(), str(path))
    model = build_classifier(f"torchvision:resnet18@{path}?input_size=64", "cpu")
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), reference((x - mean) / std))
    assert model.spec.num_classes == 7 and model.spec.cam_layer == "layer4"
    assert model.spec.feature_layers[-1] == "layer4"
    assert len(model.features(x)) == len(model.spec.feature_layers)


def test_arch_errors_are_one_sentence(exports, tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not fit"):
        build_classifier(f"resnet18@{exports['state.pt']}", "cpu")
    with pytest.raises(ModelFileError, match="no architecture 'nonet'"):
        build_classifier(f"timm:nonet@{exports['state.pt']}", "cpu")
    with pytest.raises(ModelFileError, match="does not exist"):
        build_classifier(f"resnet18@{tmp_path / 'missing.pth'}", "cpu")


class _Dense(nn.Module):
    """Not a classifier: returns an image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class _TinyViT(nn.Module):
    """Patch embedding, then tokens ``N×T×D`` to the end (as a vision transformer)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 8, stride=8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.mix(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(1))


def test_output_not_logits_is_one_message(tmp_path) -> None:
    path = tmp_path / "dense.ts"
    torch.jit.script(_Dense()).save(str(path))
    with pytest.raises(ModelFileError, match=r"is 2×3×32×32, not N×C class logits"):
        build_classifier(f"file:{path}?input_size=32", "cpu")


def test_cam_layer_choice_and_refusals(exports, photos32, tmp_path) -> None:
    found = probe(_TinyViT().eval(), 32)
    layer, note = choose_cam_layer(found)
    assert layer == "" and "vision transformer" in note
    vit = tmp_path / "vit.ts"
    torch.jit.script(_TinyViT()).save(str(vit))
    scripted = build_classifier(f"file:{vit}?input_size=32", "cpu")
    with pytest.raises(PercvizError, match="TorchScript"):
        gradcam_plus_plus(scripted, photos32)
    with pytest.raises(ModelFileError, match=r"Layer 'features\.99' does not exist"):
        build_classifier(_ref(exports["tiny.onnx"], cam_layer="features.99"), "cpu")
    assert choose_cam_layer(probe(make_tiny().net, 32))[0] == "features"
    chosen = build_classifier(_ref(exports["tiny.onnx"], cam_layer="features/features/1/Relu"), "cpu")
    assert gradcam_plus_plus(chosen, photos32).raw_lowres.shape[-1] == 32


def test_zoo_model_with_chosen_cam_layer_shares_the_network() -> None:
    base = load_model("efficientnet_lite0", "cpu")
    chosen = load_model("efficientnet_lite0?cam_layer=blocks.5", "cpu")
    assert chosen.net is base.net and chosen.spec.cam_layer == "blocks.5"
    assert chosen.spec.id == "efficientnet_lite0?cam_layer=blocks.5"
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model("efficientnet_lite0?cam_layer=blocks.99", "cpu")
    with pytest.raises(ModelFileError, match="only the cam_layer option"):
        parse_model_ref("efficientnet_lite0?labels=x.txt")
    with pytest.raises(ModelFileError, match="Unknown model option"):
        parse_model_ref("file:x.onnx?colour=red")


def test_labels_file(exports, photos32, tmp_path) -> None:
    names = [f"thing {i}" for i in range(10)]
    text = tmp_path / "labels.txt"
    text.write_text("\n".join(names) + "\n")
    model = build_classifier(_ref(exports["tiny.onnx"], labels=str(text), input_size=32), "cpu")
    top = predict(model, photos32, top=3)
    assert all(p.label in names for row in top for p in row)
    as_json = tmp_path / "labels.json"
    as_json.write_text(json.dumps({str(i): n for i, n in enumerate(names)}))
    assert build_classifier(_ref(exports["tiny.onnx"], labels=str(as_json)), "cpu").labels == names
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(ModelFileError, match="has 2 names but the model has 10 classes"):
        build_classifier(_ref(exports["tiny.onnx"], labels=str(short)), "cpu")


def test_hosted_mode_refuses_own_models(exports, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    with pytest.raises(ModelFileError, match="turned off"):
        load_model(_ref(exports["tiny.onnx"]), "cpu")
    assert main(["models"]) == 0
    assert "Own models are turned off" in capsys.readouterr().out


def test_hugging_face_not_in_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelFileError, match=r"not in the local cache .*hf download someone/vit"):
        build_classifier("hf:someone/vit", "cpu")


def test_hugging_face_without_transformers(tmp_path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    try:
        import transformers  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("transformers is installed here")
    snapshot = tmp_path / "models--someone--vit" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"id2label": {"0": "a", "1": "b"}}')
    refs = tmp_path / "models--someone--vit" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelFileError, match=r"need the transformers package \(pip install transformers\)"):
        build_classifier("hf:someone/vit", "cpu")


def test_tiny_spec_is_a_classifier() -> None:
    assert TINY_SPEC.kind == "classifier" and TINY_SPEC.labels == ()


def test_models_command_lists_offline_models_and_own_model_help(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for model in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert any(line.startswith(model) and "available" in line for line in out.splitlines())
    assert "file:PATH" in out and "ARCH@PATH" in out and "hf:REPO_ID" in out
