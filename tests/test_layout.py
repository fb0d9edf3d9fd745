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
