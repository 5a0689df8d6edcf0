"""The package's layers: no module imports from a layer above its own (function-level imports included)."""

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pointjepa"

#: Each part of ``pointjepa`` and its layer, low to high. A module imports from its own part and from
#: parts on lower layers only; parts on one layer do not import each other.
LAYERS = {
    "ops": 0,  # batched point-cloud ops: FPS, kNN, ball query, gather
    "utils": 0,  # checkpoint reading, pretrained weights, optimizer schedule, atomic writes
    "modules": 1,  # plain nn.Modules: tokenizer, transformer, predictor, heads, transforms
    "datasets": 1,  # data modules, loaders, file formats, the synset tables
    "metrics": 2,  # mIoU, SVM probe accuracy
    "viz": 2,  # figures
    "models": 3,  # the LightningModules; what a task does in training (freezing, SVM validation) is in its hooks
    "callbacks": 4,  # Lightning callbacks a config adds: checkpoints, resume, NaN guard, figures, summaries
    "api": 5,  # loading a pretrained encoder from Python
    "cli": 5,  # the LightningCLI shared by the entry points
    "__main__": 6,  # entry points: pretraining, fine-tuning, evaluation commands, the package itself
    "tasks": 6,
    "eval": 6,
    "__init__": 6,
}


def part(module: str) -> str:
    """``pointjepa.models.point_jepa`` -> ``models``; the package itself (and its attributes) -> ``__init__``."""
    names = module.split(".")
    inside = len(names) > 1 and ((PACKAGE / names[1]).is_dir() or (PACKAGE / f"{names[1]}.py").is_file())
    return names[1] if inside else "__init__"


def module_name(path: Path) -> str:
    """``pointjepa/models/point_jepa.py`` -> ``pointjepa.models.point_jepa`` (a package by its ``__init__``)."""
    names = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every ``pointjepa`` module that ``path`` imports, at any depth of its code;
    ``from pointjepa import viz`` names ``pointjepa.viz``."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "pointjepa")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if base == "pointjepa":
                yield from ((node.lineno, f"pointjepa.{alias.name}") for alias in node.names)
            elif base.startswith("pointjepa."):
                yield node.lineno, base


def test_every_part_of_the_package_has_a_layer():
    parts = {part(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert parts == set(LAYERS), f"without a layer: {parts - set(LAYERS)}, no such part: {set(LAYERS) - parts}"


def test_no_module_imports_from_its_own_layer_or_above():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = part(module_name(path))
        for line, module in imports(path):
            target = part(module)
            if target != source and LAYERS.get(target, LAYERS[source]) >= LAYERS[source]:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                violations.append(
                    f"{where} ({source}, layer {LAYERS[source]}) imports {module} "
                    f"({target}, layer {LAYERS.get(target)})"
                )
    assert not violations, "imports from the same or a higher layer:\n" + "\n".join(violations)
