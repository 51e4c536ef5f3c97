"""Object-store / URL sources: fetched into a local mirror, then built exactly like local files.

fsspec's in-memory filesystem (``memory://``) stands in for a bucket in-process, and ``file://`` URLs for the CLI
(a subprocess cannot see another process's memory filesystem); both go through the same fsspec code path as
``s3://`` and ``gs://``, which need network and credentials these tests do not have.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from test_execute import build_in, sharded_project

from cardtune.curate.errors import UserInputError
from cardtune.curate.sources import remote

URLS = {
    "shards/*.parquet": "memory://bucket/proj/shards/*.parquet",
    "notes.jsonl": "memory://bucket/proj/notes.jsonl",
    "held.jsonl": "memory://bucket/proj/held.jsonl",
    "bench.jsonl": "memory://bucket/proj/bench.jsonl",
}


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fsspec.AbstractFileSystem]:
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    yield fs
    fs.rm("/bucket", recursive=True) if fs.exists("/bucket") else None


def upload(fs: fsspec.AbstractFileSystem, local: Path, prefix: str = "/bucket/proj") -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())


def remote_card(local_card: Path, target: Path) -> Path:
    text = local_card.read_text(encoding="utf-8")
    for local, url in URLS.items():
        text = text.replace(f"path: {local}", f"path: '{url}'")
    target.mkdir(parents=True, exist_ok=True)
    (target / "tpl").mkdir(exist_ok=True)
    for file in (local_card.parent / "tpl").rglob("*.yaml"):
        dest = target / "tpl" / file.relative_to(local_card.parent / "tpl")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(file.read_bytes())
    (target / "card.yaml").write_text(text, encoding="utf-8")
    return target / "card.yaml"


def data_files(digests: dict[str, str]) -> dict[str, str]:
    return {name: digest for name, digest in digests.items() if name.endswith(".parquet")}


def test_a_bucket_builds_the_same_rows_as_the_same_files_on_disk(
    tmp_path: Path, bucket: fsspec.AbstractFileSystem
) -> None:
    local_card = sharded_project(tmp_path / "proj")
    upload(bucket, tmp_path / "proj")
    card = remote_card(local_card, tmp_path / "remote")
    assert "memory://bucket/proj/shards/*.parquet" in card.read_text(encoding="utf-8")
    local_id, local_files = build_in(tmp_path / "w1", local_card)
    remote_id, remote_files = build_in(tmp_path / "w2", card, workers=2)
    assert remote_id != local_id  # the card names other paths (the id covers the card as written) ...
    assert data_files(remote_files) == data_files(local_files)  # ... the rows are byte for byte the same
    assert set(data_files(local_files)) == {"train.parquet", "eval.parquet", "heldout.parquet", "rejects.parquet"}
    mirrored = sorted(p.name for p in (tmp_path / "cache" / "remote").rglob("*.parquet"))
    assert mirrored == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]


def test_the_mirror_follows_the_bucket(tmp_path: Path, bucket: fsspec.AbstractFileSystem) -> None:
    for i in range(3):
        bucket.pipe_file(f"/bucket/d/part-{i}.jsonl", f'{{"x": {i}}}\n'.encode())
    where = "task 't': source"
    first = remote.mirror("memory://bucket/d/", where)
    assert sorted(p.name for p in first.iterdir()) == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    kept = (first / "part-1.jsonl").stat().st_mtime_ns
    bucket.pipe_file("/bucket/d/part-0.jsonl", b'{"x": 10}\n{"x": 11}\n')  # changed (another size)
    bucket.rm("/bucket/d/part-2.jsonl")  # gone
    again = remote.mirror("memory://bucket/d/", where)
    assert again == first
    assert sorted(p.name for p in again.iterdir()) == ["part-0.jsonl", "part-1.jsonl"]
    assert (again / "part-0.jsonl").read_bytes() == b'{"x": 10}\n{"x": 11}\n'
    assert (again / "part-1.jsonl").stat().st_mtime_ns == kept  # unchanged: not fetched again
    glob = remote.mirror("memory://bucket/d/part-*.jsonl", where)
    assert glob.name == "part-*.jsonl" and sorted(p.name for p in glob.parent.iterdir()) == [
        "part-0.jsonl",
        "part-1.jsonl",
    ]
    one = remote.mirror("memory://bucket/d/part-1.jsonl", where)
    assert one.is_file() and one.read_bytes() == b'{"x": 1}\n'


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://bucket/none.jsonl", "memory://bucket/none.jsonl: not found (task 't': source)"),
        (
            "memory://bucket/*.nothing",
            "task 't': source: the glob matched no files (looked in memory://bucket/*.nothing)",
        ),
        ("nosuchproto://x/y.jsonl", "nosuchproto://x/y.jsonl: Protocol not known: nosuchproto"),
    ],
)
def test_a_url_that_cannot_be_read_is_one_line(bucket: fsspec.AbstractFileSystem, url: str, expected: str) -> None:
    with pytest.raises(UserInputError) as info:
        remote.mirror(url, "task 't': source")
    assert expected in str(info.value) and "\n" not in str(info.value)


def run_cli(card: Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"CARDTUNE_CACHE": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "cardtune", "build", str(card), "--quiet"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )


def test_the_cli_builds_from_a_file_url(tmp_path: Path) -> None:
    local_card = sharded_project(tmp_path / "proj")
    text = local_card.read_text(encoding="utf-8")
    for local in URLS:
        text = text.replace(f"path: {local}", f"path: '{(tmp_path / 'proj' / local).as_uri().replace('%2A', '*')}'")
    card = tmp_path / "card-url" / "card.yaml"
    card.parent.mkdir()
    (card.parent / "tpl").symlink_to(tmp_path / "proj" / "tpl")
    card.write_text(text, encoding="utf-8")
    proc = run_cli(card, tmp_path, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    local = run_cli(local_card, tmp_path / "proj", tmp_path / "cache")
    assert local.returncode == 0, local.stderr
    (remote_version,) = (tmp_path / "out" / "sharded").iterdir()
    (local_version,) = (tmp_path / "proj" / "out" / "sharded").iterdir()
    for split in ("train", "eval", "heldout", "rejects"):
        assert (remote_version / f"{split}.parquet").read_bytes() == (local_version / f"{split}.parquet").read_bytes()
    manifest = (remote_version / "manifest.json").read_text(encoding="utf-8")
    assert (tmp_path / "proj" / "notes.jsonl").as_uri() in manifest  # the card as written: the URL, not the mirror


@pytest.mark.parametrize(("url", "package"), [("s3://bucket/data.parquet", "s3fs"), ("gs://b/x.jsonl", "gcsfs")])
def test_an_object_store_without_its_fsspec_package_says_what_to_install(
    tmp_path: Path, url: str, package: str
) -> None:
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here: reading {url} would need network and credentials")
    card = tmp_path / "card.yaml"
    card.write_text(f"name: u\ntasks:\n  - name: a\n    source: {{path: '{url}'}}\n", encoding="utf-8")
    proc = run_cli(card, tmp_path, tmp_path / "cache")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"card.yaml:4: tasks[0].source: {url}: " in proc.stderr and f"pip install {package}" in proc.stderr
    assert not (tmp_path / "datasets").exists()


def test_an_output_url_gets_the_version_manifest_last_and_a_new_machine_fetches_it(
    tmp_path: Path, bucket: fsspec.AbstractFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    import cardtune
    from cardtune.curate.pipeline import build

    card = sharded_project(tmp_path / "proj")
    card.write_text(card.read_text(encoding="utf-8").replace("dir: out", "dir: 'memory://bucket/datasets'"))
    writes: list[str] = []
    put, pipe = MemoryFileSystem.put_file, MemoryFileSystem.pipe_file

    def failing_put(self: MemoryFileSystem, lpath: str, rpath: str, *args: object, **kwargs: object) -> None:
        if rpath.endswith("rejects.parquet"):
            raise ConnectionError("connection reset by peer")
        writes.append(rpath.rsplit("/", 1)[1])
        put(self, lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "put_file", failing_put)
    with pytest.raises(UserInputError, match=r"memory://bucket/datasets/sharded/\w+: cannot access: connection reset"):
        build(card)
    remote_dir = bucket.ls("/bucket/datasets/sharded")[0]["name"]
    assert not bucket.exists(f"{remote_dir}/manifest.json")  # cut short: not a version in the store

    def recording_put(self: MemoryFileSystem, lpath: str, rpath: str, *args: object, **kwargs: object) -> None:
        writes.append(rpath.rsplit("/", 1)[1])
        put(self, lpath, rpath, *args, **kwargs)

    def recording_pipe(self: MemoryFileSystem, path: str, value: bytes, *args: object, **kwargs: object) -> None:
        writes.append(path.rsplit("/", 1)[1])
        pipe(self, path, value, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "put_file", recording_put)
    monkeypatch.setattr(MemoryFileSystem, "pipe_file", recording_pipe)
    writes.clear()
    again = build(card)  # the local copy is complete: it is only uploaded, manifest last
    assert again.cached and again.transfer == "uploaded" and again.url == f"memory:/{remote_dir}"
    assert writes[-1] == "manifest.json" and set(writes) == {p.name for p in again.version_dir.iterdir()}
    for file in again.version_dir.iterdir():
        assert bucket.cat_file(f"{remote_dir}/{file.name}") == file.read_bytes()
    assert build(card).transfer is None  # already in the store: nothing copied

    shutil.rmtree(tmp_path / "cache" / "out")  # another machine: no local copy
    fetched = build(card)
    assert fetched.cached and fetched.transfer == "fetched"
    assert {p.name: p.read_bytes() for p in fetched.version_dir.iterdir()} == {
        p.rsplit("/", 1)[1]: bucket.cat_file(p) for p in bucket.find(remote_dir)
    }
    splits = cardtune.load(again.url)
    assert splits["train"].num_rows == sum(fetched.manifest.counts.splits.train.values())

    shutil.rmtree(tmp_path / "cache" / "out")
    bucket.pipe_file(f"{remote_dir}/manifest.json", b'{"format": 999}')  # another cardtune's: rebuilt, replaced
    rebuilt = build(card)
    assert not rebuilt.cached and rebuilt.transfer == "uploaded"
    assert bucket.cat_file(f"{remote_dir}/manifest.json") == (rebuilt.version_dir / "manifest.json").read_bytes()

    shutil.rmtree(tmp_path / "cache" / "out")
    bucket.pipe_file(f"{remote_dir}/eval.parquet", b"not the eval split")  # damaged in the store
    with pytest.raises(UserInputError, match=r"eval\.parquet: does not match the sha256 its manifest records"):
        build(card)
    assert not any(p.is_dir() for p in (tmp_path / "cache" / "out").rglob("*") if p.name.startswith(".tmp-"))


def test_the_cli_says_where_in_the_store_the_version_went(tmp_path: Path, bucket: fsspec.AbstractFileSystem) -> None:
    from typer.testing import CliRunner

    from cardtune.cli import app

    card = sharded_project(tmp_path / "proj")
    card.write_text(card.read_text(encoding="utf-8").replace("dir: out", "dir: 'memory://bucket/ds'"))
    result = CliRunner().invoke(app, ["build", str(card), "--quiet"])
    assert result.exit_code == 0, result.output
    (version,) = bucket.ls("/bucket/ds/sharded", detail=False)
    assert f"built memory:/{version} (local copy {tmp_path / 'cache' / 'out'}" in " ".join(result.output.split())
    shutil.rmtree(tmp_path / "cache" / "out")
    result = CliRunner().invoke(app, ["build", str(card), "--quiet"])
    assert result.exit_code == 0 and "fetched from the store" in result.output
