"""Model zoo, the [0,1]-input classifier wrapper, ImageNet labels and top-k prediction."""

from percviz.models.classifier import (
    Classifier,
    Prediction,
    build_classifier,
    imagenet_labels,
    load_model,
    predict,
    predictions,
)
from percviz.models.zoo import (
    DEFAULT_MODEL,
    ZOO_MODELS,
    ModelSpec,
    ModelStatus,
    all_model_status,
    get_spec,
    hub_checkpoint_dir,
    model_status,
    unavailable_message,
)

__all__ = [
    "DEFAULT_MODEL",
    "ZOO_MODELS",
    "Classifier",
    "ModelSpec",
    "ModelStatus",
    "Prediction",
    "all_model_status",
    "build_classifier",
    "get_spec",
    "hub_checkpoint_dir",
    "imagenet_labels",
    "load_model",
    "model_status",
    "predict",
    "predictions",
    "unavailable_message",
]
