"""Loading from the Hugging Face cache and pushing to the Hub (issue 24, item 6), with nothing reaching a hub.

The cache is built the way huggingface_hub lays it out (`models--org--name/refs/<ref>` holding a commit
hash, `snapshots/<commit>/<file>` symlinks into `blobs/`); uploads are intercepted on `HfApi`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi

from setfit_core import SetFitHead, SetFitModel, Trainer, TrainingArguments, UnsafeHeadError

COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40
TEXTS = ["good movie", "awful film", "i love it", "so sad"]
TRAIN = {
    "text": ["good movie", "great film", "nice plot", "i love it", "bad movie", "awful film", "poor plot", "i hate it"],
    "label": ["positive"] * 4 + ["negative"] * 4,
}


def fake_hub_cache(cache_dir: Path, repo_id: str, model_dir: str | Path, commit: str = COMMIT,
                   ref: str | None = "main") -> Path:
    """Put `model_dir` into `cache_dir` as huggingface_hub's cache holds a downloaded snapshot of `repo_id`."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(Path(model_dir).rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()  # the etag: an LFS file's sha256
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))  # relative, as huggingface_hub writes them
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no trailing newline, as huggingface_hub writes it
    return snapshot


def _train(model: SetFitModel) -> SetFitModel:
    args = TrainingArguments(num_iterations=1, num_epochs=(1, 2), show_progress_bar=False, seed=0,
                             save_strategy="no")
    Trainer(model, args, train_dataset=TRAIN).train()
    return model


@pytest.fixture(scope="module")
def saved(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Trained tiny models saved by save_pretrained: "sklearn" (string labels), "torch", "setfit" (setfit 1.x's
    layout: config_setfit.json + model_head.pkl only) and "plain" (a sentence-transformers body, no head)."""
    root = tmp_path_factory.mktemp("saved")
    sklearn_model = _train(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"))
    sklearn_model.save_pretrained(str(root / "sklearn"))
    _train(SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")).save_pretrained(
        str(root / "torch"))
    sklearn_model.save_pretrained(str(root / "setfit"), setfit_compatible=True)
    (root / "setfit" / "model_head.skops").unlink()  # what setfit 1.2.0 itself writes has no safe head
    shutil.copytree(tiny_model_dir, root / "plain")
    return {name: root / name for name in ("sklearn", "torch", "setfit", "plain")}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def predictions(model: SetFitModel):
    return list(model.predict(TEXTS)), np.asarray(model.predict_proba(TEXTS, as_numpy=True))


def test_trained_model_loads_from_the_cache_with_its_head_and_labels(saved, cache):
    """The silent failure of issue 24: a hub id served from the cache came back headless."""
    fake_hub_cache(cache, "org/sst2-setfit", saved["sklearn"])
    model = SetFitModel.from_pretrained("org/sst2-setfit", cache_dir=cache, device="cpu")
    local = SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu")
    assert model.labels == ["negative", "positive"]
    assert model.predict(TEXTS) == local.predict(TEXTS)
    np.testing.assert_allclose(predictions(model)[1], predictions(local)[1], rtol=1e-6)


def test_default_cache_is_huggingface_hubs(saved, cache, monkeypatch):
    """No cache_dir: huggingface_hub's own cache (HF_HUB_CACHE), as `from_pretrained("<org>/<model>")` uses it."""
    import huggingface_hub.constants

    fake_hub_cache(cache, "org/sst2-setfit", saved["sklearn"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    model = SetFitModel.from_pretrained("org/sst2-setfit", device="cpu")
    assert model.labels == ["negative", "positive"]
    assert set(model.predict(TEXTS)) <= {"negative", "positive"}


def test_local_files_only_reads_the_cache_without_hf_hub_offline(saved, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    fake_hub_cache(tmp_path / "hub", "org/sst2-setfit", saved["sklearn"])
    model = SetFitModel.from_pretrained("org/sst2-setfit", cache_dir=tmp_path / "hub", local_files_only=True,
                                        device="cpu")
    assert model.labels == ["negative", "positive"]


def test_differentiable_head_loads_from_the_cache(saved, cache):
    fake_hub_cache(cache, "org/torch-setfit", saved["torch"])
    model = SetFitModel.from_pretrained("org/torch-setfit", cache_dir=cache, device="cpu")
    local = SetFitModel.from_pretrained(str(saved["torch"]), device="cpu")
    assert isinstance(model.model_head, SetFitHead) and model.has_differentiable_head
    np.testing.assert_allclose(predictions(model)[1], predictions(local)[1], rtol=1e-6)


def test_revision_picks_the_snapshot(saved, cache):
    fake_hub_cache(cache, "org/model", saved["plain"], commit=COMMIT)  # main: the base body, no head
    fake_hub_cache(cache, "org/model", saved["sklearn"], commit=OTHER_COMMIT, ref="v1")
    assert SetFitModel.from_pretrained("org/model", cache_dir=cache, device="cpu").labels is None
    assert SetFitModel.from_pretrained("org/model", revision="v1", cache_dir=cache, device="cpu").labels == [
        "negative", "positive"]
    by_hash = SetFitModel.from_pretrained("org/model", revision=OTHER_COMMIT, cache_dir=cache, device="cpu")
    assert by_hash.labels == ["negative", "positive"]
    with pytest.raises(OSError, match=r"could not load model 'org/model'.*HF_HUB_OFFLINE is set.*revision 'v2'"):
        SetFitModel.from_pretrained("org/model", revision="v2", cache_dir=cache, device="cpu")


def test_base_model_from_the_cache_gets_a_fresh_head(saved, cache):
    fake_hub_cache(cache, "org/base", saved["plain"])
    model = SetFitModel.from_pretrained("org/base", cache_dir=cache, device="cpu")
    assert model.labels is None and not hasattr(model.model_head, "coef_")
    _train(model)
    assert set(model.predict(TEXTS)) <= {"negative", "positive"}


def test_setfit_pickled_head_needs_trust_pickle_and_names_the_repo(saved, cache):
    fake_hub_cache(cache, "org/setfit-model", saved["setfit"])
    with pytest.raises(UnsafeHeadError, match=r"model 'org/setfit-model' from the Hugging Face Hub cache: .*"
                                              r"'model_head.pkl'.*trust_pickle=True"):
        SetFitModel.from_pretrained("org/setfit-model", cache_dir=cache, device="cpu")
    model = SetFitModel.from_pretrained("org/setfit-model", cache_dir=cache, device="cpu", trust_pickle=True)
    assert model.labels == ["negative", "positive"]
    local = SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu")
    assert model.predict(TEXTS) == local.predict(TEXTS)


def test_unknown_head_file_is_an_error_not_a_headless_model(saved, cache, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(saved["plain"], odd)
    (odd / "model_head.safetensors").write_bytes(b"\0" * 16)  # a head file nothing says how to read
    fake_hub_cache(cache, "org/odd", odd)
    with pytest.raises(ValueError, match=r"holds head file\(s\) \['model_head.safetensors'\].*config_setfit.json "
                                         r"is missing"):
        SetFitModel.from_pretrained("org/odd", cache_dir=cache, device="cpu")


def test_damaged_torch_head_is_an_error_naming_the_file(saved, cache, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(saved["torch"], broken)
    (broken / "model_head.safetensors").write_bytes(b"not safetensors")
    fake_hub_cache(cache, "org/broken", broken)
    with pytest.raises(ValueError, match=r"could not load the differentiable head .*model_head.safetensors"):
        SetFitModel.from_pretrained("org/broken", cache_dir=cache, device="cpu")


def test_repo_not_in_the_cache_says_what_to_do(cache):
    with pytest.raises(OSError, match=r"could not load model 'org/missing' from the Hugging Face Hub \(HF_HUB_OFFLINE "
                                      r"is set.*Pass a local directory"):
        SetFitModel.from_pretrained("org/missing", cache_dir=cache, device="cpu")


def test_force_download_offline_is_a_clear_error(saved, cache):
    fake_hub_cache(cache, "org/sst2-setfit", saved["sklearn"])
    with pytest.raises(ValueError, match=r"force_download=True needs the Hugging Face Hub, but HF_HUB_OFFLINE"):
        SetFitModel.from_pretrained("org/sst2-setfit", cache_dir=cache, force_download=True)


# ---- push_to_hub ---------------------------------------------------------------------------------


class FakeHub:
    """Stands in for the two HfApi calls push_to_hub makes; keeps a copy of the uploaded folder."""

    def __init__(self, tmp_path: Path) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.uploaded = tmp_path / "uploaded"

    def create_repo(self, api, repo_id, **kwargs):
        from huggingface_hub import RepoUrl

        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, api, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        shutil.copytree(kwargs["folder_path"], self.uploaded)  # the temporary folder is gone after the call
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/{COMMIT}"


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # huggingface_hub itself stays offline (read at import)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: fake.create_repo(api, repo_id, **kw))
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: fake.upload_folder(api, **kw))
    return fake


def _listing(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_push_uploads_what_save_pretrained_writes(saved, hub, tmp_path):
    model = SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu")
    url = model.push_to_hub("org/pushed", commit_message="first", private=True, branch="dev", create_pr=True,
                            token="hf_test")
    assert url.endswith(f"/commit/{COMMIT}")
    (create, create_kwargs), (upload, upload_kwargs) = hub.calls
    assert (create, upload) == ("create_repo", "upload_folder")
    assert create_kwargs == {"repo_id": "org/pushed", "private": True, "exist_ok": True}
    assert {k: upload_kwargs[k] for k in ("repo_id", "repo_type", "commit_message", "revision", "create_pr")} == {
        "repo_id": "org/pushed", "repo_type": "model", "commit_message": "first", "revision": "dev",
        "create_pr": True}
    model.save_pretrained(str(tmp_path / "local"))
    assert _listing(hub.uploaded) == _listing(tmp_path / "local")
    assert json.loads((hub.uploaded / "config_setfit.json").read_text())["labels"] == ["negative", "positive"]


def test_pushed_model_loads_back_from_the_cache(saved, hub, tmp_path, monkeypatch):
    model = SetFitModel.from_pretrained(str(saved["torch"]), device="cpu")
    model.push_to_hub("org/round-trip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_cache(tmp_path / "hub", "org/round-trip", hub.uploaded)
    loaded = SetFitModel.from_pretrained("org/round-trip", cache_dir=tmp_path / "hub", device="cpu")
    np.testing.assert_allclose(predictions(loaded)[1], predictions(model)[1], rtol=1e-6)


def test_push_setfit_compatible_uploads_the_pickle_too(saved, hub):
    SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu").push_to_hub("org/both", setfit_compatible=True)
    assert {"model_head.pkl", "model_head.skops"} <= set(_listing(hub.uploaded))


def test_push_refuses_before_saving_when_offline_or_misnamed(saved, hub, monkeypatch):
    model = SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu")
    with pytest.raises(ValueError, match=r"'repo_id' must be a model repo id such as 'my-org/my-model'; got 'a/b/c'"):
        model.push_to_hub("a/b/c")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"push_to_hub\('org/x'\) needs the Hugging Face Hub, but HF_HUB_OFFLINE is set"):
        model.push_to_hub("org/x")
    assert hub.calls == []


def test_push_untrained_differentiable_model_is_refused(tiny_model_dir, hub):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    with pytest.raises(RuntimeError, match="cannot push a model whose head was never built; train it first"):
        model.push_to_hub("org/untrained")
    assert hub.calls == []


def test_trainer_push_to_hub_pushes_its_model_as_setfit(saved, hub, tmp_path):
    """setfit's `Trainer.push_to_hub(repo_id, **kwargs)`: the model's push, committed as "Add SetFit model"."""
    model = SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu")
    trainer = Trainer(model, TrainingArguments(show_progress_bar=False), train_dataset=TRAIN)
    url = trainer.push_to_hub("org/from-trainer", private=True, setfit_compatible=True)
    assert url.endswith(f"/commit/{COMMIT}")
    (_, create_kwargs), (_, upload_kwargs) = hub.calls
    assert create_kwargs == {"repo_id": "org/from-trainer", "private": True, "exist_ok": True}
    assert upload_kwargs["commit_message"] == "Add SetFit model"
    assert "model_head.pkl" in _listing(hub.uploaded)
    shutil.rmtree(hub.uploaded)
    trainer.push_to_hub("org/from-trainer", commit_message="second")
    assert hub.calls[-1][1]["commit_message"] == "second"


def test_trainer_push_to_hub_needs_the_full_repo_id(saved, hub):
    trainer = Trainer(SetFitModel.from_pretrained(str(saved["sklearn"]), device="cpu"))
    with pytest.raises(ValueError, match=r"'repo_id' must be a full repository id with its organisation or user, "
                                         r"such as 'my-org/my-model'; got 'setfit-sst2'"):
        trainer.push_to_hub("setfit-sst2")
    assert hub.calls == []
