"""Pretraining CLI: ``python -m pointjepa fit -c configs/Point-JEPA/pretraining/shapenet.yaml``."""

from pointjepa.callbacks.svm_at_min_val_loss import SvmAccuracyAtMinValLoss
from pointjepa.cli import PointJepaCLI, run_cli
from pointjepa.models.point_jepa import PointJepa


def main(args: list[str] | None = None) -> None:
    """Run the pretraining CLI on ``args`` (default: the command line)."""
    PointJepaCLI(
        PointJepa,
        monitor="val_loss",
        mode="min",
        check_val_every_n_epoch=10,
        wandb_group="pretraining",
        extra_callbacks=[SvmAccuracyAtMinValLoss()],
        args=args,
    )


if __name__ == "__main__":
    run_cli(main)
