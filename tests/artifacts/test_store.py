from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

import fsspec
import pytest

from setfit_core.artifacts import ArtifactStore, Manifest, stage_key

STAGE = "body"
PARENTS = {"pairs": "a" * 64}
INPUTS = {"train": "b" * 64}
VERSIONS = {"setfit_core": "0.1.0"}
CONFIG = {"lr": 2e-5, "epochs": 1, "sizes": (16, 2)}
KEY = stage_key(STAGE, CONFIG, PARENTS, INPUTS, VERSIONS)
MODEL = b"weights-" * 5000


def write_stage(store: ArtifactStore, *, fail: bool = False, barrier=None) -> Manifest:
    """Publish the reference stage: one file at the top, one in a subdirectory."""
    with store.write_stage(STAGE, KEY, parents=PARENTS, config=CONFIG, inputs=INPUTS, versions=VERSIONS) as writer:
        (writer.dir / "model.bin").write_bytes(MODEL)
        (writer.dir / "sub").mkdir()
        (writer.dir / "sub" / "config.json").write_text('{"dim": 8}')
        writer.metrics["loss"] = 0.25
        writer.timings["train"] = 1.5
        if barrier is not None:
            barrier.wait(timeout=60)  # all writers reach publish together
        if fail:
            raise RuntimeError("training blew up")
    assert writer.manifest is not None
    return writer.manifest


def raw(store: ArtifactStore, relpath: str = "") -> tuple[fsspec.AbstractFileSystem, str]:
    """Filesystem and path of a stage file, bypassing the store (to corrupt things)."""
    uri = store.stage_uri(STAGE, KEY)
    # A cached s3fs instance saves ~0.2 s of client setup per call; the explicit endpoint
    # is part of its cache key, so it can never point at another test session's server.
    options = {} if store.is_local else {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    fs, path = fsspec.core.url_to_fs(uri, use_listings_cache=False, **options)
    return fs, f"{path}/{relpath}" if relpath else path


def edit_manifest(store: ArtifactStore, **changes) -> None:
    fs, path = raw(store, "manifest.json")
    data = json.loads(fs.cat_file(path))
    data.update(changes)
    fs.pipe_file(path, json.dumps(data).encode())


def leftovers(base: Path) -> list[str]:
    return [p.name for p in base.glob("*/.*")] if base.exists() else []


def test_write_then_find_verifies(store):
    manifest = write_stage(store)
    assert [f.path for f in manifest.files] == ["model.bin", "sub/config.json"]
    assert manifest.file("model.bin").size == len(MODEL)
    assert manifest.config == {"lr": 2e-5, "epochs": 1, "sizes": [16, 2]}
    assert manifest.metrics == {"loss": 0.25} and manifest.timings == {"train": 1.5}
    assert store.find(STAGE, KEY) == manifest
    assert store.verify(manifest) == []
    assert store.list_stages() == [manifest] == store.list_stages(STAGE)
    with store.open_file(STAGE, KEY, "sub/config.json") as f:
        assert f.read() == b'{"dim": 8}'


def test_find_missing_is_none_without_warning(store, caplog):
    assert store.find(STAGE, KEY) is None
    assert store.list_stages() == []
    assert [r for r in caplog.records if r.name.startswith("setfit_core")] == []


def test_flipped_byte_is_not_trusted(store, caplog):
    write_stage(store)
    fs, path = raw(store, "model.bin")
    data = bytearray(fs.cat_file(path))
    data[100] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    assert store.find(STAGE, KEY) is None
    assert "model.bin: sha256" in caplog.text and "did not verify" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING


def test_truncated_file_is_not_trusted(store, caplog):
    write_stage(store)
    fs, path = raw(store, "sub/config.json")
    fs.pipe_file(path, b'{"di')
    assert store.find(STAGE, KEY) is None
    assert "sub/config.json: size 4 != recorded 10" in caplog.text


def test_missing_file_is_not_trusted(store, caplog):
    write_stage(store)
    fs, path = raw(store, "model.bin")
    fs.rm_file(path)
    assert store.find(STAGE, KEY) is None
    assert "model.bin: missing" in caplog.text


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "manifest.json"])
def test_manifest_pointing_outside_is_rejected(store, caplog, path):
    write_stage(store)
    edit_manifest(store, files=[{"path": path, "size": 1, "sha256": "c" * 64}])
    assert store.find(STAGE, KEY) is None
    assert "ignoring stage body/" in caplog.text and "path" in caplog.text
    assert store.list_stages() == []


def test_manifest_with_edited_config_is_rejected(store, caplog):
    write_stage(store)
    edit_manifest(store, config={"lr": 1.0, "epochs": 1, "sizes": [16, 2]})
    assert store.find(STAGE, KEY) is None
    assert "edited manifest?" in caplog.text


def test_exception_publishes_nothing(store, tmp_path):
    with pytest.raises(RuntimeError, match="training blew up"):
        write_stage(store, fail=True)
    assert store.find(STAGE, KEY) is None
    fs, path = raw(store)
    assert not fs.exists(f"{path}/manifest.json")
    assert not fs.exists(path) or fs.find(path) == []
    assert leftovers(tmp_path / "artifacts") == leftovers(tmp_path / "cache") == []


def test_second_write_keeps_the_existing_stage(store):
    first = write_stage(store)
    time.sleep(0.01)
    assert write_stage(store) == first  # same created_at: ours was discarded


def test_corrupt_leftover_is_replaced(store, tmp_path, caplog):
    fs, path = raw(store)
    fs.makedirs(path, exist_ok=True)
    fs.pipe_file(f"{path}/stale.bin", b"partial upload")
    fs.pipe_file(f"{path}/model.bin", b"half")
    manifest = write_stage(store)
    assert store.find(STAGE, KEY) == manifest
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(path)) == ["config.json", "manifest.json", "model.bin"]
    assert leftovers(tmp_path / "artifacts") == []


def test_file_in_place_of_the_stage_dir_is_replaced(tmp_path, caplog):
    store = ArtifactStore(tmp_path)
    (tmp_path / STAGE).mkdir()
    (tmp_path / STAGE / KEY).write_text("junk")
    assert store.find(STAGE, KEY) is None
    assert write_stage(store) == store.find(STAGE, KEY)
    assert [p.name for p in (tmp_path / STAGE).iterdir()] == [KEY]


def test_write_stage_rejects_a_key_that_is_not_the_content_key(store):
    with pytest.raises(ValueError, match=r"key '0{64}' for stage 'body' is not stage_key\(\)"):
        with store.write_stage(STAGE, "0" * 64, parents=PARENTS, config=CONFIG, inputs=INPUTS, versions=VERSIONS):
            pass


def test_write_stage_rejects_links_and_a_user_manifest(store, tmp_path):
    (tmp_path / "outside").write_text("secret")
    for name, make in [
        ("link", lambda d: (d / "link").symlink_to(tmp_path / "outside")),
        ("manifest.json", lambda d: (d / "manifest.json").write_text("{}")),
    ]:
        with pytest.raises(ValueError, match=name):
            with store.write_stage(
                STAGE, KEY, parents=PARENTS, config=CONFIG, inputs=INPUTS, versions=VERSIONS
            ) as writer:
                make(writer.dir)
        assert store.find(STAGE, KEY) is None


def test_user_values_cannot_escape_the_root(store):
    with pytest.raises(ValueError, match=r"stage name must match .* got '\.\./etc'"):
        store.find("../etc", KEY)
    with pytest.raises(ValueError, match=r"stage key must be 64 lowercase hex"):
        store.local_path(STAGE, "../" + KEY[3:])
    with pytest.raises(ValueError, match=r"must not contain empty, '\.' or '\.\.' segments"):
        store.open_file(STAGE, KEY, "sub/../../x")
    with pytest.raises(ValueError, match=r"mode must be 'rb' or 'r'"):
        store.open_file(STAGE, KEY, "model.bin", mode="wb")


def test_delete_stage(store):
    write_stage(store)
    store.delete_stage(STAGE, KEY)
    assert store.find(STAGE, KEY) is None and store.list_stages() == []
    fs, path = raw(store)
    assert not fs.exists(path) or fs.find(path) == []


def test_open_file_streams_parquet(store):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"text": ["a", "b"], "label": [0, 1]})
    key = stage_key("pairs", {}, {}, {}, {})
    with store.write_stage("pairs", key, parents={}, config={}, inputs={}, versions={}) as w:
        pq.write_table(table, w.dir / "pairs.parquet")
    with store.open_file("pairs", key, "pairs.parquet") as f:
        assert pq.read_table(f).equals(table)


def test_local_path_on_local_root_is_the_stage_dir(tmp_path):
    store = ArtifactStore(f"file://{tmp_path}/artifacts")
    write_stage(store)
    assert store.local_path(STAGE, KEY) == tmp_path / "artifacts" / STAGE / KEY
    store.delete_stage(STAGE, KEY)
    with pytest.raises(FileNotFoundError, match="no verified stage body/"):
        store.local_path(STAGE, KEY)


def test_local_path_on_s3_downloads_verifies_and_repairs_the_cache(s3_root, tmp_path, caplog):
    write_stage(ArtifactStore(s3_root, cache_dir=tmp_path / "writer-cache"))
    reader = ArtifactStore(s3_root, cache_dir=tmp_path / "reader-cache")
    local = reader.local_path(STAGE, KEY)
    assert local == tmp_path / "reader-cache" / STAGE / KEY
    assert (local / "model.bin").read_bytes() == MODEL
    assert (local / "sub" / "config.json").read_text() == '{"dim": 8}'
    (local / "model.bin").write_bytes(b"tampered")
    assert reader.local_path(STAGE, KEY) == local
    assert "did not verify" in caplog.text
    assert (local / "model.bin").read_bytes() == MODEL
    assert leftovers(tmp_path / "reader-cache") == []


def test_local_path_on_s3_refuses_a_corrupt_remote(s3_root, tmp_path):
    writer = ArtifactStore(s3_root, cache_dir=tmp_path / "writer-cache")
    write_stage(writer)
    fs, path = raw(writer, "model.bin")
    fs.pipe_file(path, b"x" * len(MODEL))
    reader = ArtifactStore(s3_root, cache_dir=tmp_path / "reader-cache")
    with pytest.raises(FileNotFoundError, match="model.bin: sha256"):
        reader.local_path(STAGE, KEY)
    assert leftovers(tmp_path / "reader-cache") == []


def test_cleanup_temp_removes_only_stale_leftovers(tmp_path):
    store = ArtifactStore(tmp_path)
    stale, fresh = tmp_path / STAGE / f".tmp-{KEY}-old", tmp_path / STAGE / f".tmp-{KEY}-new"
    for leftover in (stale, fresh):
        (leftover / "sub").mkdir(parents=True)
        (leftover / "sub" / "f").write_text("x")
    for p in (stale / "sub" / "f", stale / "sub", stale):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    assert store.cleanup_temp(older_than_s=3600) == [str(stale)]
    assert fresh.exists() and not stale.exists()


def test_cleanup_temp_on_s3_removes_remote_leftovers_but_never_a_stage(s3_root, tmp_path):
    """Parts of a crashed sharded run (`.tmp-*`) and an upload that never wrote its manifest."""
    store = ArtifactStore(s3_root, cache_dir=tmp_path / "cache")
    write_stage(store)
    fs, stage_dir = raw(store)
    base = stage_dir.rsplit("/", 2)[0]
    parts, partial = f"{base}/embeddings/.tmp-{KEY}-shards-ab12", f"{base}/body/{'e' * 64}"
    fs.pipe_file(f"{parts}/part-00000.parquet", b"part")
    fs.pipe_file(f"{partial}/model.safetensors", b"half")
    assert store.cleanup_temp(older_than_s=3600) == []  # too young: could be a run in progress
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    assert sorted(store.cleanup_temp(older_than_s=0)) == sorted([f"s3://{parts}", f"s3://{partial}"])
    assert not fs.find(parts) and not fs.find(partial)
    assert store.find(STAGE, KEY) is not None


def _concurrent_writer(root: str, barrier, results) -> None:
    results.put(write_stage(ArtifactStore(root), barrier=barrier).created_at)


def test_concurrent_local_writers_publish_exactly_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_writer, args=(str(tmp_path), barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    created = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert len(set(created)) == 1  # every writer reports the one published manifest
    assert [p.name for p in (tmp_path / STAGE).iterdir()] == [KEY]
    assert ArtifactStore(tmp_path).find(STAGE, KEY).created_at == created[0]


def test_endpoint_from_env_only_and_from_storage_options(s3_server, s3_root, tmp_path, monkeypatch):
    write_stage(ArtifactStore(s3_root, cache_dir=tmp_path / "c1"))  # AWS_ENDPOINT_URL only
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    for options in ({"endpoint_url": s3_server}, {"client_kwargs": {"endpoint_url": s3_server}}):
        store = ArtifactStore(s3_root, storage_options=options, cache_dir=tmp_path / "c2")
        assert store.find(STAGE, KEY) is not None


def test_credentials_never_appear(s3_server, s3_root, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="setfit_core")
    secret_id, secret = "AKIASECRETKEYID123", "s3cr3t/Value+xyz"
    store = ArtifactStore(s3_root, cache_dir=tmp_path / "c", storage_options={"key": secret_id, "secret": secret})
    manifest = write_stage(store)
    fs, path = raw(store)
    stored = b"".join(fs.cat_file(p) for p in fs.find(path)).decode("latin-1")
    for text in (repr(store), str(store), manifest.to_json(), stored, caplog.text):
        assert secret_id not in text and secret not in text
    assert repr(store) == f"ArtifactStore(root={s3_root!r})"


def test_root_validation(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported artifact root scheme 'gs'; use a local"):
        ArtifactStore("gs://bucket/x")
    with pytest.raises(ValueError, match=r"credentials in the environment") as info:
        ArtifactStore("s3://AKIA:hunter2@bucket/x")
    assert "hunter2" not in str(info.value)
    assert ArtifactStore(f"file://{tmp_path}/").root == str(tmp_path)
    assert ArtifactStore("s3://bucket/prefix/").root == "s3://bucket/prefix"
