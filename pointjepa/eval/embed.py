r"""Features of your own point clouds and meshes from a checkpoint, in one ``.npz``; optionally each file's
nearest neighbours (a retrieval demo) and a t-SNE picture.

    python -m pointjepa.eval.embed --ckpt artifacts/<run>/checkpoints/last.ckpt --input data/ModelNet40 \
        --output features.npz [--neighbors 5] [--tsne tsne.png]

``--input`` is a folder (every supported file under it), one file, or a glob (quoted: "scans/**/*.ply").
Files are read as ``PointCloudFolderDataModule`` reads them (meshes sampled uniformly on their surface to
``--sample_points``, seeded by the file's bytes), then embedded as ``pointjepa.load_encoder`` does: the
checkpoint's own evaluation transforms, then the max and mean of the encoder's final tokens.

The ``.npz`` holds ``features`` (n, F) float32, ``files`` (n,) paths relative to ``root`` (the input
folder, or the folder the matched files share), ``groups`` (n,) each file's class folder (the first folder
that is not train/ or test/; "." for none), and with ``--neighbors K`` ``neighbors`` (n, K) int64, the rows
of the K other files of highest cosine similarity, most similar first, and their ``similarities`` (n, K).
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pointjepa.api import load_encoder
from pointjepa.datasets.base import DataError
from pointjepa.datasets.cloud_cache import iterate_clouds
from pointjepa.datasets.folder_index import folder_class, list_cloud_files
from pointjepa.datasets.point_files import SUFFIXES
from pointjepa.eval._cli_common import pick_device
from pointjepa.utils.io import atomic_write
from pointjepa.viz import save_png, tsne_figure

#: How many files' neighbours are printed (all are in the .npz).
SHOWN_NEIGHBORS = 5


def resolve_input(spec: str) -> tuple[Path, list[str]]:
    """``--input`` -> (root, files relative to root, sorted): a folder's supported files, one file, or a glob's."""
    path = Path(spec)
    if path.is_dir():
        files = list_cloud_files(path)
        if not files:
            raise DataError(
                f"--input {spec}: no point cloud or mesh file in the folder (expected {' '.join(SUFFIXES)})"
            )
        return path, files
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise DataError(
                f"--input {spec}: unsupported file type {path.suffix!r}, expected one of {' '.join(SUFFIXES)}"
            )
        return path.parent, [path.name]
    matches = [Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file()]
    matches = [m for m in matches if m.suffix.lower() in SUFFIXES]
    if not matches:
        raise DataError(
            f"--input {spec}: no such folder or file, and no point cloud or mesh file matches it as a glob "
            f"(expected {' '.join(SUFFIXES)})"
        )
    root = Path(os.path.commonpath([m.parent.absolute() for m in matches]))
    return root, sorted(m.absolute().relative_to(root).as_posix() for m in matches)


def nearest_neighbors(features: torch.Tensor, k: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """features (n, F) -> the rows of each row's ``k`` most cosine-similar other rows (n, k) int64, most similar
    first, and those similarities (n, k); ``chunk`` rows at a time, so memory stays (chunk, n)."""
    if not 0 < k < len(features):
        raise ValueError(
            f"--neighbors: expected 1 to {len(features) - 1} (fewer than the {len(features)} files), got {k}"
        )
    unit = F.normalize(features.float(), dim=1)
    indices, similarities = [], []
    for start in range(0, len(unit), chunk):
        similarity = unit[start : start + chunk] @ unit.T
        rows = torch.arange(start, start + len(similarity), device=unit.device)
        similarity[torch.arange(len(similarity), device=unit.device), rows] = -torch.inf  # not its own neighbour
        top = similarity.topk(k, dim=1)
        indices.append(top.indices)
        similarities.append(top.values)
    return torch.cat(indices), torch.cat(similarities)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pointjepa.eval.embed",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ckpt", required=True, help="pretraining or fine-tuned checkpoint (any layout load_encoder reads)"
    )
    parser.add_argument("--input", required=True, help="a folder, one file, or a glob (quote it)")
    parser.add_argument("--output", default="features.npz", help="the .npz to write (default: %(default)s)")
    parser.add_argument("--neighbors", type=int, default=0, metavar="K", help="also write each file's K nearest files")
    parser.add_argument(
        "--tsne", type=Path, default=None, metavar="PNG", help="also write a t-SNE picture, one colour per class folder"
    )
    parser.add_argument(
        "--sample_points", type=int, default=2048, help="points read per file (meshes: surface samples)"
    )
    parser.add_argument(
        "--num_points", type=int, default=None, help="FPS subsample size (default: the checkpoint model's)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed mixed into each file's sampling seed, as the data module's"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0, help="processes reading the files")
    parser.add_argument("--device", default="auto", help="'auto' (GPU when available), 'cpu', 'cuda:0', ...")
    parser.add_argument("--dpi", type=int, default=120, help="resolution of the t-SNE PNG")
    args = parser.parse_args(argv)
    for name in ("sample_points", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    if args.neighbors < 0 or args.num_workers < 0:
        parser.error("--neighbors and --num_workers: expected >= 0")
    return args


@torch.inference_mode()
def main(argv: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run the command on ``argv`` (default: the command line) -> the arrays written."""
    args = parse_args(argv)
    root, files = resolve_input(args.input)
    if args.neighbors >= len(files):
        raise ValueError(f"--neighbors {args.neighbors}: expected fewer than the {len(files)} files of --input")
    if args.tsne is not None and len(files) < 3:
        raise ValueError(f"--tsne: needs at least 3 files, --input gives {len(files)}")
    device = pick_device(args.device)
    encoder = load_encoder(args.ckpt, device=device, num_points=args.num_points)
    if encoder.num_points is not None and args.sample_points < encoder.num_points:
        raise ValueError(
            f"--sample_points {args.sample_points}: fewer than the {encoder.num_points} points the encoder "
            "subsamples to; raise it or lower --num_points"
        )
    clouds = iterate_clouds(
        [root / rel for rel in files], args.sample_points, args.seed, args.batch_size, args.num_workers, "and embedding"
    )
    features = torch.cat([encoder(torch.from_numpy(batch).to(device)).float() for batch in clouds])
    groups = [folder_class(rel) or "." for rel in files]
    arrays: dict[str, Any] = dict(
        features=features.cpu().numpy(), files=np.array(files), groups=np.array(groups), root=np.array(str(root))
    )
    if args.neighbors:
        indices, similarities = nearest_neighbors(features, args.neighbors)
        arrays.update(neighbors=indices.cpu().numpy(), similarities=similarities.cpu().numpy())
    atomic_write(args.output, lambda f: np.savez(f, **arrays))
    print(f"wrote {args.output}: {len(files)} files under {root}, {features.shape[1]} features each")
    if args.neighbors:
        for i in range(min(SHOWN_NEIGHBORS, len(files))):
            found = ", ".join(
                f"{files[j]} ({s:.3f})" for j, s in zip(arrays["neighbors"][i], arrays["similarities"][i])
            )
            print(f"  {files[i]} -> {found}")
    if args.tsne is not None:
        names = sorted(set(groups))
        labels = np.array([names.index(group) for group in groups])
        figure = tsne_figure(arrays["features"], labels, names, seed=args.seed)
        figure.axes[0].set_title(f"t-SNE: {Path(args.ckpt).name}, {len(files)} files under {root.name}")
        print(f"wrote {save_png(figure, args.tsne, args.dpi)}")
    return arrays


if __name__ == "__main__":
    from pointjepa.cli import run_cli

    run_cli(main)
