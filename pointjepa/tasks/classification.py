r"""Classification fine-tuning CLI.

    python -m pointjepa.tasks.classification fit -c configs/Point-JEPA/classification/modelnet40.yaml \
        --model.pretrained_ckpt_path artifacts/<run>/checkpoints/last.ckpt
"""

from pointjepa.cli import PointJepaCLI, run_cli
from pointjepa.models.classification import PointJepaClassification


def main(args: list[str] | None = None) -> None:
    """Run the classification CLI on ``args`` (default: the command line)."""
    PointJepaCLI(
        PointJepaClassification,
        monitor="val_acc",
        mode="max",
        link_num_classes=True,
        wandb_group="classification",
        args=args,
    )


if __name__ == "__main__":
    run_cli(main)
