"""The package boundaries of docs/design.md §2, read from the source with `ast` (every import, also those inside
functions): the model never imports the recipe, and the runtime imports neither torch nor the
toolkit's torch-side packages nor the apps."""

import ast
from pathlib import Path

import smop_edge.models
import smop_edge.recipe
import smop_edge.runtime

MODELS = Path(smop_edge.models.__path__[0])
RECIPE = Path(smop_edge.recipe.__path__[0])
RUNTIME = Path(smop_edge.runtime.__path__[0])


def imported_names(source: str, package: str) -> set[str]:
    """Absolute names of the modules `source` (a module of `package`) imports anywhere: `from x import y`
    counts as x and x.y (y may be a submodule), relative imports are resolved against `package`, and
    `importlib.import_module` / `__import__` calls with a literal name count too."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.add(node.args[0].value)
    return names


def imports_of_package(folder: Path, package: str) -> dict[str, set[str]]:
    """{file relative to `folder`: imported names} for every .py file under `folder` (subpackages included)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        subpackage = ".".join([package, *rel.parent.parts]) if rel.parent.parts else package
        out[str(rel)] = imported_names(path.read_text(encoding="utf-8"), subpackage)
    return out


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_imported_names_sees_function_level_relative_and_dynamic_imports():
    source = ("import numpy as np\n"
              "from . import zoo, flops\n"
              "from ..recipe import corpus\n"
              "def f():\n"
              "    import torch.nn\n"
              "    from .checkpoint import load_model\n"
              "    class C:\n"
              "        def g(self):\n"
              "            from smop_edge import apps\n"
              "    importlib.import_module('smop_edge.export.bundle')\n")
    names = imported_names(source, "smop_edge.models")
    assert {"numpy", "smop_edge.models", "smop_edge.models.zoo", "smop_edge.models.flops", "smop_edge.recipe",
            "smop_edge.recipe.corpus", "torch.nn", "smop_edge.models.checkpoint", "smop_edge.apps",
            "smop_edge.export.bundle"} <= names


def test_the_model_never_imports_the_recipe():
    recipe_modules = {p.stem for p in RECIPE.glob("*.py")} - {"__init__"}
    model_modules = {p.stem for p in MODELS.glob("*.py")}
    assert {"corpus", "training", "speech_synth"} <= recipe_modules
    # a relative import of a recipe module that is not (or no longer) in models/ is a slip of the same kind
    stray = {f"smop_edge.models.{m}" for m in recipe_modules - model_modules}
    found = imports_of_package(MODELS, "smop_edge.models")
    assert "torch" in found["llama_smop.py"]  # the walk sees the model's imports
    bad = {f: sorted(n for n in names if within(n, ("smop_edge.recipe",)) or n in stray)
           for f, names in found.items()}
    assert not {f: n for f, n in bad.items() if n}


def test_the_runtime_imports_no_torch_and_no_torch_side_or_app_package():
    forbidden = ("torch", "smop_edge.models", "smop_edge.recipe", "smop_edge.export", "smop_edge.apps")
    found = imports_of_package(RUNTIME, "smop_edge.runtime")
    assert "numpy" in found["features.py"]  # the walk sees the runtime's imports
    bad = {f: sorted(n for n in names if within(n, forbidden)) for f, names in found.items()}
    assert not {f: n for f, n in bad.items() if n}
