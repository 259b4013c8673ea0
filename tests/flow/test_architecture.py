"""Packages import downward only (docs/architecture.md): the IR and arithmetic at the bottom,
then the compiler and engine, then simulation and boards, then the API, the flow and the CLI.
Function-local imports count too, so no cycle hides inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Top-level folder -> package name (pyproject's package-dir).
FOLDERS = {"dynfix": "dynfix", "quant": "dynfix.quant", "hw": "dynfix.hw",
           "sim": "dynfix.sim", "boards": "dynfix.boards"}
#: Layer of each package or top-level module; a module imports only from lower layers and
#: from its own package. ``dynfix`` itself (the lazy facade) is left out.
LAYERS = {"dynfix.errors": 0, "dynfix.data": 0, "dynfix.fileio": 1,
          "dynfix.quant": 2, "dynfix.hw": 3, "dynfix.sim": 4, "dynfix.boards": 4,
          "dynfix.inputs": 5, "dynfix.api": 6, "dynfix.workflow": 7,
          "dynfix.commands": 8, "dynfix.cli": 9}


def modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join((pkg, *rel))] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, anywhere in the file."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".")
            if node.level:
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            subs = [f"{mod}.{a.name}" for a in node.names]
            # ``from pkg import module`` needs the module; ``from pkg import name``, pkg.
            targets = subs + ([mod] if any(t not in known for t in subs) else [])
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def group(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_has_a_layer():
    missing = sorted({group(m) for m in graph()} - set(LAYERS) - {"dynfix"})
    assert not missing, f"give these a layer in LAYERS: {missing}"


def test_packages_import_downward_only():
    upward = []
    for a, targets in graph().items():
        if a == "dynfix":
            continue
        for b in targets:
            ga, gb = group(a), group(b)
            if ga != gb and (gb == "dynfix" or LAYERS[gb] >= LAYERS[ga]):
                upward.append(f"{a} -> {b}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_module_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(g.get(m, ())):
            # A package's __init__ re-exporting its own modules is not a cycle.
            if m.startswith(n + ".") and g.get(n) is not None:
                continue
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [m, n])
                              if n in stack else f"{m} -> {n}")
            elif n not in state:
                visit(n, stack + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_comments_carry_no_measurements():
    """Measured figures (clock rates, dated synthesis results) live in docs/ and
    bench/results/, not in comments or docstrings of the source, where they go stale: no
    comment line names a frequency or a date, and no docstring a date. (Docstrings may
    state a part's specified limits, such as a PLL's VCO range.)"""
    import io
    import re
    import tokenize
    clock = re.compile(r"\d(\.\d+)?\s*MHz")
    date = re.compile(r"\b20\d\d-\d\d-\d\d\b")
    found = []
    for path in modules().values():
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            text = tok.string
            docstring = tok.type == tokenize.STRING and text.lstrip("rbuRBU").startswith('"""')
            if (tok.type == tokenize.COMMENT and (clock.search(text) or date.search(text))) \
                    or (docstring and date.search(text)):
                found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}")
    assert not found, "measurements in comments: " + ", ".join(found)


def test_api_error_messages_name_no_cli_flags():
    """Below the commands, a DynfixError names the caller's argument through a placeholder
    (``{images}``, dynfix.errors), which the CLI renders as its flag: no message written
    there spells a flag (``--images``) itself."""
    import re
    flag_text = re.compile(r"(^|[\s(])--[a-z]")
    found = []
    for name, path in modules().items():
        if name.startswith(("dynfix.commands", "dynfix.cli")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DynfixError":
                texts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)
                         and isinstance(c.value, str)]
                if any(flag_text.search(t) for t in texts):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, "flags in API error messages: " + ", ".join(found)
