"""Data modules of every supported data set (published file formats) and the built-in synthetic ones."""

from pointjepa.datasets.base import DataError, PointCloudDataModule
from pointjepa.datasets.folder import PointCloudFolderDataModule
from pointjepa.datasets.modelnet40 import ModelNet40Ply2048DataModule
from pointjepa.datasets.modelnet40_fewshot import ModelNet40FewShotDataModule
from pointjepa.datasets.scanobjectnn import ScanObjectNNDataModule
from pointjepa.datasets.shapenet55 import ShapeNet55DataModule
from pointjepa.datasets.shapenetpart import ShapeNetPartDataModule
from pointjepa.datasets.synthetic import SyntheticShapesDataModule
from pointjepa.datasets.synthetic_parts import SyntheticPartsDataModule
