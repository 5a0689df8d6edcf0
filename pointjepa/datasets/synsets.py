"""Constant tables of the ShapeNet-based data sets (no pytorch3d needed).

- ``SHAPENET55_SYNSETS``: the 55 ShapeNetCore v2 synset ids sorted as strings; a ShapeNet55
  label is the index of its synset here.
- ``SHAPENET55_NAMES``: synset id -> category name.
- ``SHAPENETPART_SYNSETS`` / ``SHAPENETPART_PARTS``: the 16 ShapeNetPart categories in the
  order of the published ``synsetoffset2category.txt`` (= category label), their synset ids
  and their global part ids (0-49).
"""

from __future__ import annotations

SHAPENET55_NAMES: dict[str, str] = {
    "02691156": "airplane",
    "02747177": "trash bin",
    "02773838": "bag",
    "02801938": "basket",
    "02808440": "bathtub",
    "02818832": "bed",
    "02828884": "bench",
    "02843684": "birdhouse",
    "02871439": "bookshelf",
    "02876657": "bottle",
    "02880940": "bowl",
    "02924116": "bus",
    "02933112": "cabinet",
    "02942699": "camera",
    "02946921": "can",
    "02954340": "cap",
    "02958343": "car",
    "02992529": "cellphone",
    "03001627": "chair",
    "03046257": "clock",
    "03085013": "keyboard",
    "03207941": "dishwasher",
    "03211117": "monitor",
    "03261776": "earphone",
    "03325088": "faucet",
    "03337140": "file cabinet",
    "03467517": "guitar",
    "03513137": "helmet",
    "03593526": "jar",
    "03624134": "knife",
    "03636649": "lamp",
    "03642806": "laptop",
    "03691459": "loudspeaker",
    "03710193": "mailbox",
    "03759954": "microphone",
    "03761084": "microwave",
    "03790512": "motorbike",
    "03797390": "mug",
    "03928116": "piano",
    "03938244": "pillow",
    "03948459": "pistol",
    "03991062": "flowerpot",
    "04004475": "printer",
    "04074963": "remote",
    "04090263": "rifle",
    "04099429": "rocket",
    "04225987": "skateboard",
    "04256520": "sofa",
    "04330267": "stove",
    "04379243": "table",
    "04401088": "telephone",
    "04460130": "tower",
    "04468005": "train",
    "04530566": "vessel",
    "04554684": "washer",
}

SHAPENET55_SYNSETS: tuple[str, ...] = tuple(sorted(SHAPENET55_NAMES))
SHAPENET55_LABEL_NAMES: tuple[str, ...] = tuple(SHAPENET55_NAMES[s] for s in SHAPENET55_SYNSETS)
SHAPENET55_LABELS: dict[str, int] = {s: i for i, s in enumerate(SHAPENET55_SYNSETS)}

SHAPENETPART_SYNSETS: dict[str, str] = {
    "Airplane": "02691156",
    "Bag": "02773838",
    "Cap": "02954340",
    "Car": "02958343",
    "Chair": "03001627",
    "Earphone": "03261776",
    "Guitar": "03467517",
    "Knife": "03624134",
    "Lamp": "03636649",
    "Laptop": "03642806",
    "Motorbike": "03790512",
    "Mug": "03797390",
    "Pistol": "03948459",
    "Rocket": "04099429",
    "Skateboard": "04225987",
    "Table": "04379243",
}


def _part_ranges(sizes: dict[str, int]) -> dict[str, list[int]]:
    parts, start = {}, 0
    for category, size in sizes.items():
        parts[category] = list(range(start, start + size))
        start += size
    return parts


SHAPENETPART_PARTS: dict[str, list[int]] = _part_ranges(
    {
        "Airplane": 4,
        "Bag": 2,
        "Cap": 2,
        "Car": 4,
        "Chair": 4,
        "Earphone": 3,
        "Guitar": 3,
        "Knife": 2,
        "Lamp": 4,
        "Laptop": 2,
        "Motorbike": 6,
        "Mug": 2,
        "Pistol": 3,
        "Rocket": 3,
        "Skateboard": 3,
        "Table": 3,
    }
)
SHAPENETPART_NUM_PARTS = 50
