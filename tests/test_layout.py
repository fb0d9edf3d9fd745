"""The library stays free of Prefect; the project installs the packages and the console script."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setfit_core_never_imports_prefect():
    offenders = []
    for path in (ROOT / "setfit_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "prefect"]
    assert not offenders, offenders


def test_importing_setfit_core_loads_no_prefect():
    code = "import sys, setfit_core, setfit_core.trainer, setfit_core.artifacts; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_console_script_is_installed():
    exe = shutil.which("setfit-pipeline") or str(Path(sys.executable).parent / "setfit-pipeline")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "setfit-pipeline" in out.stdout


def test_installing_creates_no_top_level_flows_or_tasks_package(tmp_path):
    """flows/ and tasks/ install as setfit_pipeline.flows and setfit_pipeline.tasks: no clash with another
    project's `flows` or `tasks`. Run from outside the checkout, where the working directory adds nothing."""
    code = ("import importlib.util as u, setfit_pipeline.flows.cli, setfit_pipeline.tasks.common; "
            "print(u.find_spec('flows'), u.find_spec('tasks'), setfit_pipeline.flows.cli.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.split() == ["None", "None", "setfit_pipeline.flows.cli"]


def test_every_package_under_setfit_core_is_installed():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "setfit_core").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"


def _imports(tree: ast.AST):
    """Every import statement, at module level or inside functions, except under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """setfit_core modules that `module` (at `path`) imports, when it is imported or in a function."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            submodules = [f"{base}.{a.name}" for a in node.names]
            # `from package import submodule` needs the submodule, not a name the package defines.
            names = submodules if all(n in known for n in submodules) else [base, *submodules]
        found |= {n for n in names if n in known and n != module}
    return found


def test_setfit_core_has_no_import_cycle():
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "setfit_core").rglob("*.py")}
    graph = {m: _imported_modules(p, m, set(paths)) for m, p in paths.items()}
    done: set[str] = set()
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        for dep in sorted(graph[module]):
            if dep in stack:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in done:
                visit(dep, [*stack, dep])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_module_level_switches_in_the_library():
    """Which speed-ups run is an `EngineOptions` passed down, never a module constant flipped for an A/B."""
    switches = []
    for path in (ROOT / "setfit_core").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, bool):
                switches.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not switches, switches


def test_tests_never_patch_the_engine():
    """Tests choose speed-ups with `EngineOptions` and look at what ran in `EngineReport`; patching an engine
    or training module would test something other than what users run."""
    offenders = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("setfit_core.engine",
                                                                                     "setfit_core.training")):
                aliases |= {a.asname or a.name for a in node.names}
            if isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names
                            if a.name.startswith(("setfit_core.engine", "setfit_core.training"))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("setattr") and node.args:
                target = ast.unparse(node.args[0])
                named = "setfit_core.engine" in target or "setfit_core.training" in target
                if target.split(".")[0] in aliases or named:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders


def test_the_public_api_is_all_and_every_name_resolves():
    import setfit_core

    assert set(setfit_core.__all__) == set(setfit_core._EXPORTS)
    assert all(getattr(setfit_core, name) is not None for name in setfit_core.__all__)
