"""Metrics the models, callbacks and eval commands share: classification accuracies, token spread, part
segmentation mIoUs and the linear-SVM probe of pooled features. Below models and callbacks: imports only libraries."""

from pointjepa.metrics.accuracy import classification_metrics
from pointjepa.metrics.collapse import token_std
from pointjepa.metrics.miou import PartSegmentationIoU, part_ious, part_mask, restricted_argmax, shape_mious
from pointjepa.metrics.svm import extract_features, linear_svm_accuracy

__all__ = [
    "PartSegmentationIoU",
    "classification_metrics",
    "extract_features",
    "linear_svm_accuracy",
    "part_ious",
    "part_mask",
    "restricted_argmax",
    "shape_mious",
    "token_std",
]
