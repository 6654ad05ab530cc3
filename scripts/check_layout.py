"""What issue 35 asks of the package's layout, checked: no module over 600 lines, no function
over 80 (generated code aside), no private name imported from another module, no import cycle,
and every import pointing the one way of `LAYERS` (data -> models -> decoding -> service).

    python scripts/check_layout.py        # prints what breaks a rule; exit status 1 if anything does
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "translator"
MODULE_LINES, FUNCTION_LINES = 600, 80
ENTRY_POINTS = {"translator.cli", "translator.cli_tools", "translator.__main__"}
# The parts of the package and the parts each may import ("basics": the top-level modules).
LAYERS = {
    "basics": set(),
    "data": {"basics"},
    "models": {"basics", "data"},
    "decoding": {"basics", "data", "models"},
    "service": {"basics", "data", "models", "decoding"},
    "training": {"basics", "data", "models", "decoding"},
    "studies": {"basics", "data", "models", "decoding", "service", "training"},
    "entry points": {"basics", "data", "models", "decoding", "service", "training", "studies"},
}


def layer_of(module: str) -> str:
    if module in ENTRY_POINTS:
        return "entry points"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "basics"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def problems() -> list[str]:
    found, imports = [], {}
    names = {name for name, _, _ in modules()}
    for name, path, tree in modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MODULE_LINES:
            found.append(f"{name}: {lines} lines (more than {MODULE_LINES})")
        imports[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    found.append(f"{name}.{node.name}: {length} lines (more than {FUNCTION_LINES})")
            elif isinstance(node, ast.ImportFrom) and node.module in names:
                imports[name].add(node.module)
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{name} imports the private {node.module}.{alias.name}")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(imports)]
    for module, others in sorted(imports.items()):
        layer = layer_of(module)
        found += [f"{module} ({layer}) imports {other} ({layer_of(other)}), against the layers' direction"
                  for other in sorted(others) if layer_of(other) != layer and layer_of(other) not in LAYERS[layer]]
    return found


def _cycles(imports: dict) -> list[list[str]]:
    """The import cycles among the package's modules (imports inside functions included)."""
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for other in sorted(imports.get(module, ())):
            if state.get(other) == "open":
                cycles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(imports):
        if module not in state:
            visit(module, [module])
    return cycles


if __name__ == "__main__":
    report = problems()
    print("\n".join(report) or "the layout holds")
    sys.exit(1 if report else 0)
