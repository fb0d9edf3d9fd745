"""The deployments' pull step: change into this project's checkout, found without any configuration.

A flow run of a `process` worker starts in a temporary directory. The deployments' relative parameters
(``artifacts/demo-data/train.parquet``, ``artifacts_root: artifacts``, ``artifacts/aliases/production.json``)
mean the checkout the worker runs, so the run changes into it first:

- ``SETFIT_PIPELINE_HOME``, when set (a Kubernetes image that holds the repository at /app, say);
- else the checkout this package is installed from (``pip install -e .``, as ``make install`` does): the
  directory above ``flows/`` that holds ``deployments/prefect.yaml``.

When neither applies (a wheel installed without a checkout), the run fails here, in its first step, with one
line that says what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "SETFIT_PIPELINE_HOME"
PREFECT_FILE = Path("deployments") / "prefect.yaml"


def installed_checkout() -> Path | None:
    """The checkout this package runs from, or None for an install without one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / PREFECT_FILE).is_file() else None


def set_checkout_directory(directory: str | None = None) -> dict[str, str]:
    """A Prefect pull step: ``os.chdir`` into `directory` (the deployments pass ``{{ $SETFIT_PIPELINE_HOME }}``,
    which Prefect leaves out when the variable is unset) or this package's checkout; returns ``{"directory"}``,
    which Prefect takes as the run's working directory."""
    if directory:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{HOME_VARIABLE}={directory!r} is not a directory; set it to the checkout of "
                                    f"setfit-pipeline that holds {PREFECT_FILE}, or unset it on the worker")
    else:
        found = installed_checkout()
        if found is None:
            raise FileNotFoundError(
                f"no setfit-pipeline checkout to run in: the package at {Path(__file__).resolve().parents[1]} holds "
                f"no {PREFECT_FILE}. Install it editable from the checkout (`pip install -e .`, `make install`), or "
                f"set {HOME_VARIABLE} to the checkout before `prefect worker start`"
            )
        path = found
    os.chdir(path)
    return {"directory": str(path.resolve())}
