"""The import graph: one direction, CLI -> stages -> core, and no circles.

Read from the source (every import, function-local ones too; `if TYPE_CHECKING:` ones are types
only and do not count), so a new import that runs the wrong way fails here, not in review.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ("vlmagent.cli", "vlmagent.__main__")  # `python -m vlmagent` is the CLI too
STAGES = "vlmagent.stages"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "stages":  # installed as vlmagent.stages (pyproject's package-dir)
        parts = ["vlmagent", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def runtime_imports(tree: ast.AST) -> set[str]:
    """Modules this file imports when it runs (a `from pkg import name` counts pkg and pkg.name)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    files = [*ROOT.glob("vlmagent/**/*.py"), *ROOT.glob("stages/**/*.py")]
    modules = {module_name(f): f for f in files}
    return {
        name: {m for m in runtime_imports(ast.parse(f.read_text())) if m in modules and m != name}
        for name, f in modules.items()
    }


def layer(module: str) -> int:
    if module in CLI:
        return 2
    if module == STAGES or module.startswith(STAGES + "."):
        return 1
    return 0  # the core: config, shards, envs, prompts, policy, rollout, ppo, ...


def test_imports_run_one_way_cli_stages_core():
    wrong = sorted(
        f"{a} imports {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)
    )
    assert wrong == [], "imports that run back up (CLI -> stages -> core): " + "; ".join(wrong)


def test_no_import_circles():
    """No module reaches itself again through imports (a package's __init__ gathering its own
    submodules is its facade, not a circle, so those edges are left out)."""
    g = {
        a: {b for b in targets if not (b.startswith(a + ".") and module_name_is_package(a))}
        for a, targets in graph().items()
    }
    circles = []
    for start in g:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in g[node]:
                if nxt == start:
                    circles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert circles == [], "import circles: " + "; ".join(sorted(set(circles)))


def module_name_is_package(name: str) -> bool:
    rel = Path(*name.split("."))
    if name == STAGES or name.startswith(STAGES + "."):
        rel = Path("stages", *name.split(".")[2:])
    return (ROOT / rel / "__init__.py").exists()


def test_the_checks_see_a_wrong_import(tmp_path):
    """The graph is read from source: a core module importing a stage would be caught."""
    tree = ast.parse("def f():\n    from vlmagent.stages.collect import run\n")
    assert "vlmagent.stages.collect" in runtime_imports(tree)
    typing_only = ast.parse("if TYPE_CHECKING:\n    from vlmagent.policy.load import Policy\n")
    assert runtime_imports(typing_only) == set()
    assert layer("vlmagent.stages.collect") > layer("vlmagent.shards")
