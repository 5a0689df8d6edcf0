"""Part segmentation CLI:
``python -m pointjepa.tasks.part_segmentation fit -c configs/Point-JEPA/segmentation/shapenetpart.yaml``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser

from pointjepa.cli import PointJepaCLI, run_cli
from pointjepa.models.part_segmentation import PointJepaPartSegmentation

LINKED_DATA_ATTRIBUTES = ("num_classes", "num_seg_classes", "category_to_parts")


class MissingDataAttributeError(ValueError):
    """The data module lacks what part segmentation needs from it."""


def data_attribute(name: str) -> Callable[[pl.LightningDataModule], Any]:
    """A link source reading ``name`` from the data module, with a clear error when it has none."""

    def read(datamodule: pl.LightningDataModule) -> Any:
        if not hasattr(datamodule, name):
            raise MissingDataAttributeError(
                f"data: {type(datamodule).__name__} has no '{name}'; part segmentation needs a data module with "
                f"{', '.join(LINKED_DATA_ATTRIBUTES)} (e.g. ShapeNetPartDataModule, SyntheticPartsDataModule)"
            )
        return getattr(datamodule, name)

    read.__name__ = f"data.{name}"
    return read


class PartSegmentationCLI(PointJepaCLI):
    """``PointJepaCLI`` for ``PointJepaPartSegmentation`` that passes the data module's categories, part
    count and category -> parts table to the model; checkpoints follow ``val_cat_miou``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            PointJepaPartSegmentation, monitor="val_cat_miou", mode="max", wandb_group="part_segmentation", **kwargs
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        for name in LINKED_DATA_ATTRIBUTES:
            parser.link_arguments("data", f"model.{name}", compute_fn=data_attribute(name), apply_on="instantiate")

    def instantiate_classes(self) -> None:
        """A data module without parts fails with our message alone, not jsonargparse's wrapping of it."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            if isinstance(err.__cause__, MissingDataAttributeError):
                raise err.__cause__ from None
            raise


def main(args: list[str] | None = None) -> None:
    """Run the part segmentation CLI on ``args`` (default: the command line)."""
    PartSegmentationCLI(args=args)


if __name__ == "__main__":
    run_cli(main)
