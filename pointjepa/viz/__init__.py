"""Figures of evaluation results, shared by the image-logging callbacks, the models and the eval commands.

Below models and callbacks: imports only ``ops``, ``modules``, ``utils`` and libraries.
"""

from pointjepa.viz.classification import ClassificationFigures
from pointjepa.viz.confusion import confusion_figure, confusion_matrix_figure
from pointjepa.viz.labels import label_names
from pointjepa.viz.render import figure_to_array, image_loggers, log_figure, save_png
from pointjepa.viz.target_context import CONTEXT, REST, TargetContext, choose_blocks, target_context_figure
from pointjepa.viz.tsne import tsne_figure

__all__ = [
    "CONTEXT",
    "ClassificationFigures",
    "REST",
    "TargetContext",
    "choose_blocks",
    "confusion_figure",
    "confusion_matrix_figure",
    "figure_to_array",
    "image_loggers",
    "label_names",
    "log_figure",
    "save_png",
    "target_context_figure",
    "tsne_figure",
]
