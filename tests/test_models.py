"""Model zoo: the real offline model, the missing-weights state, the wrapper contract."""

from __future__ import annotations

import pytest
import torch

from percviz.errors import ModelUnavailableError, UnknownIdError
from percviz.models import (
    ZOO_MODELS,
    all_model_status,
    build_classifier,
    get_spec,
    imagenet_labels,
    model_status,
    predict,
)

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_lite0_classifies_real_photos(lite0, photos224) -> None:
    top1 = [row[0].label for row in predict(lite0, photos224, top=5)]
    assert top1[0] in CAT_CLASSES
    assert top1[1] == "espresso"
    assert top1[2] in {"missile", "projectile"}


def test_lite0_contract(lite0) -> None:
    assert not lite0.training and not lite0.net.training
    assert not any(p.requires_grad for p in lite0.parameters())
    with pytest.raises(RuntimeError, match="frozen"):
        lite0.train()
    assert lite0.input_size == 224 and len(lite0.labels) == 1000


def test_normalisation_inside(lite0, photos224) -> None:
    x = photos224[:1]
    expected = lite0.net((x - 0.5) / 0.5)
    torch.testing.assert_close(lite0(x), expected)


def test_input_gradient_flows(lite0, photos224) -> None:
    x = photos224[:1].clone().requires_grad_(True)
    lite0(x)[0, 0].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_feature_layers(lite0, photos224) -> None:
    feats = lite0.features(photos224[:1])
    assert [f.shape[-1] for f in feats] == [112, 56, 28, 14, 7]


def test_labels_are_imagenet() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[967] == "espresso"


def test_missing_weights_is_a_clear_state(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    status = model_status("mobilenet_v2")
    assert not status.available
    assert "mobilenet_v2-b0353104.pth" in status.how_to_enable
    assert str(tmp_path / "hub" / "checkpoints") in status.how_to_enable
    with pytest.raises(ModelUnavailableError, match=r"mobilenet_v2-b0353104\.pth"):
        build_classifier("mobilenet_v2", "cpu")
    assert model_status("efficientnet_lite0").available
    assert next(s.spec.id for s in all_model_status()) == "efficientnet_lite0"


def test_torchvision_weights_load_from_hub_cache(tmp_path, monkeypatch) -> None:
    """With the checkpoint file in the cache, the real loading path builds the model from it."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    reference = torchvision.models.mobilenet_v2(weights=None)
    torch.save(reference.state_dict(), folder / "mobilenet_v2-b0353104.pth")
    model = build_classifier("mobilenet_v2", "cpu")
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), reference.eval()((x - mean) / std))


def test_corrupt_weight_file_is_reported(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "alexnet-owt-7be5be79.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailableError, match="unreadable"):
        build_classifier("alexnet", "cpu")


def test_unknown_model() -> None:
    with pytest.raises(UnknownIdError, match="efficientnet_lite0"):
        get_spec("resnet9000")


def test_every_spec_builds_its_architecture_and_layers() -> None:
    """Feature and CAM layer names exist in every architecture (random init, no weights needed)."""
    for spec in ZOO_MODELS.values():
        net = spec.builder()
        names = dict(net.named_modules())
        for layer in (*spec.feature_layers, spec.cam_layer):
            assert layer in names, f"{spec.id}: no layer {layer}"


def test_predict_validates_top(lite0, photos224) -> None:
    with pytest.raises(ValueError, match="top"):
        predict(lite0, photos224[:1], top=0)


@pytest.mark.slow
@pytest.mark.parametrize(("model_id", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_lite2_classify_real_photos_offline(model_id: str, size: int) -> None:
    from percviz.images import fit_to_model, load_sample, to_tensor

    model = build_classifier(model_id, "cpu")
    assert model_status(model_id).available and model.input_size == size
    x = torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, size)) for n in ("chelsea", "coffee")])
    cat, coffee = (row[0].label for row in predict(model, x, top=1))
    assert cat in CAT_CLASSES
    assert coffee in {"espresso", "cup", "coffee mug"}


class _FlattensWithView(torch.nn.Module):
    """An own model written for contiguous inputs: ``.view`` fails on a channels-last tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 8 * 8, 5)
        self.formats: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.formats.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return self.head(self.conv(x).view(x.shape[0], -1))


def _input_gradient(model: torch.nn.Module, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    from percviz.models.layout import call_channels_last

    x = x.clone().requires_grad_(True)
    out = call_channels_last(model, model, x) if channels_last else model(x)
    (grad,) = torch.autograd.grad(out.logsumexp(1).sum(), x)
    return grad


def test_channels_last_input_gives_the_same_gradient_and_falls_back_for_models_that_refuse_it() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    conv_net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    torch.testing.assert_close(_input_gradient(conv_net, x, True), _input_gradient(conv_net, x, False))
    refuses = _FlattensWithView()
    with pytest.raises(RuntimeError):
        refuses(x.contiguous(memory_format=torch.channels_last))
    refuses.formats.clear()
    torch.testing.assert_close(_input_gradient(refuses, x, True), _input_gradient(refuses, x, False))
    assert refuses.formats == [True, False, False]  # tried once, then called as given
    _input_gradient(refuses, x, True)
    assert refuses.formats[-1] is False  # remembered: no second failing try
