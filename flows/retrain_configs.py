"""Training configs for `retrain_many`: read from a YAML/JSON file or a list, merged with defaults, all checked
before the first run starts.

A file holds a list of `train_pipeline` parameter mappings, or a mapping with ``defaults`` (shared by every
run) and ``runs`` (the list)::

    defaults: {artifacts_root: s3://bucket/setfit, args: {num_iterations: 20, seed: 0}}
    runs:
      - {name: acme, train_data: s3://bucket/acme/train.parquet, eval_data: s3://bucket/acme/test.parquet}
      - {name: globex, train_data: s3://bucket/globex/train.parquet, eval_data: s3://bucket/globex/test.parquet}

`name` labels a run in the summary (default: the dataset label of its train_data); names must be unique.
A mistyped parameter or a missing train_data stops everything, before any training: it is a broken file,
not a broken dataset. Data problems (an unreadable file, one class) fail only their own run.
"""

from __future__ import annotations

import difflib
import inspect
import json
from pathlib import Path
from typing import Any

from setfit_core.pipeline import PipelineJob, dataset_label
from setfit_core.pipeline.promotion import PromotionGate

REQUIRED = ("train_data", "artifacts_root")


def load_configs(configs: list[dict[str, Any]] | str, defaults: dict[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    """The runs to train, each a dict of `train_pipeline` parameters plus ``name``, validated."""
    file_defaults: dict[str, Any] = {}
    source = "configs"
    if isinstance(configs, (str, Path)):
        source = str(configs)
        configs, file_defaults = _read_file(Path(configs))
    if not isinstance(configs, list) or not configs:
        raise ValueError(f"{source} must be a non-empty list of train_pipeline parameter mappings (or a YAML/JSON "
                         f"file of them); got {configs!r}")
    if defaults is not None and not isinstance(defaults, dict):
        raise ValueError(f"defaults must be a mapping of train_pipeline parameters; got {defaults!r}")
    runs = []
    for index, config in enumerate(configs):
        where = f"{source}[{index}]"
        if not isinstance(config, dict):
            raise ValueError(f"{where} must be a mapping of train_pipeline parameters; got {config!r}")
        runs.append(check_config({**file_defaults, **(defaults or {}), **config}, where))
    names = [run["name"] for run in runs]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"{source}: run names {duplicates} appear more than once; give each run a unique `name:` "
                         "(it labels the run in the summary)")
    return runs


def check_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    """`config` with ``name`` filled in; every error names `where` (e.g. ``runs.yaml[2]``) and the fix."""
    from setfit_pipeline.flows.train import train_pipeline

    valid = [*inspect.signature(train_pipeline.fn).parameters, "name"]
    for key in config:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {valid}"
            raise ValueError(f"{where}: unknown parameter {key!r}{hint}")
    for key in REQUIRED:
        if not config.get(key):
            raise ValueError(f"{where}: {key} is required (in the run or in defaults)")
    name = config.get("name") or dataset_label(str(config["train_data"]))
    if not isinstance(name, str):
        raise ValueError(f"{where}: name must be a string; got {name!r}")
    try:
        PipelineJob.from_dict({k: v for k, v in config.items() if k in PipelineJob.__dataclass_fields__}).validate()
        if config.get("promote_to", "production") is not None:
            PromotionGate(config.get("promote_to", "production"), config.get("min_improvement", 0.0),
                          config.get("allow_label_change", False)).validate()
    except ValueError as exc:
        raise ValueError(f"{where} ({name}): {exc}") from None
    return {**config, "name": name}


def _read_file(path: Path) -> tuple[Any, dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"configs file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"configs file {str(path)!r} is not valid YAML: {exc}") from None
    elif path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"configs file {str(path)!r} is not valid JSON: {exc}") from None
    else:
        raise ValueError(f"configs file {str(path)!r} must end in .yaml, .yml or .json")
    if isinstance(values, dict):
        if unknown := sorted(set(values) - {"defaults", "runs"}):
            raise ValueError(f"configs file {str(path)!r}: unknown top-level keys {unknown}; a mapping holds "
                             "`defaults:` and `runs:` (or write the runs as a plain list)")
        defaults = values.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ValueError(f"configs file {str(path)!r}: defaults must be a mapping; got {defaults!r}")
        return values.get("runs"), defaults
    return values, {}
