from setuptools import find_packages, setup

setup(
    name="pointjepa",
    version="0.1.0",
    description="Point-JEPA: joint-embedding predictive pretraining for point clouds, in PyTorch Lightning",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pointjepa", "pointjepa.*"]),
    python_requires=">=3.10",
    install_requires=[
        # torch and torchvision must be a matched pair (timm imports torchvision).
        "torch>=2.1",
        "torchvision>=0.16",
        "pytorch-lightning>=2.1,<3",
        "jsonargparse[signatures]>=4.49",
        "timm>=0.9",
        "numpy",
        "h5py",
        "scikit-learn",
        "torchmetrics>=1.0",
        "wandb",
        "matplotlib",
        "tqdm",
        "pyyaml",
    ],
    extras_require={
        # mypy and the stubs pinned: CI's type check must not change under a new release; trimesh for the mesh tests.
        "dev": [
            "pytest>=7",
            "pytest-timeout",
            "ruff>=0.17,<0.18",
            "mypy==2.4.1",
            "types-PyYAML==6.0.12.20261122",
            "types-tqdm==4.70.0.20261122",
            "pre-commit>=4,<5",
            "trimesh>=4.6",
        ],
        # Meshes and point clouds in .ply/.off/.obj/.stl/.glb for PointCloudFolderDataModule and eval.embed.
        "mesh": ["trimesh>=4.6"],
        # pytorch3d has no wheels on PyPI for most platforms; install it by its own instructions.
        "pytorch3d": ["pytorch3d"],
    },
    entry_points={
        "console_scripts": [
            "pointjepa-pretrain=pointjepa.__main__:main",
        ]
    },
)
