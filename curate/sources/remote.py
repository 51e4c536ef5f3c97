"""Object-store and URL sources (``s3://``, ``gs://``, ``az://``, ``hf://``, ``https://``, … through fsspec).

A source ``path`` that is a URL — one file, a folder (``…/data/``) or a glob (``…/data/*.parquet``) — is fetched
once into a local mirror, and from there on it is an ordinary local source: ``locate`` picks the reader,
fingerprinting hashes the mirrored bytes (so a remote copy and a local copy of the same files give the same version
id), partitions and every executor's workers read local files and need no credentials of their own.

The mirror of a URL lives under ``$CARDTUNE_CACHE`` (default ``~/.cache/cardtune``) ``/remote/<sha of the URL>/``,
the remote layout below it, with an ``index.json`` of what each file was when fetched (size, ETag / checksum /
modification time as the store reports them). A file is fetched again only when that changed; files gone from
the store are removed from the mirror. Each download goes to a temporary name and is renamed when complete, so a
killed fetch never leaves a truncated file that looks whole.

Errors are one line naming the URL: a protocol whose fsspec implementation is missing (``pip install s3fs`` /
``gcsfs`` / ``adlfs``), missing or refused credentials, nothing at that URL, a glob that matches nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.curate.sources.base import first_line

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")  # s3://, gs://, hf://, https:// ...
GLOB_CHARS = "*?["
INDEX = "index.json"
FILES = "files"  # the mirrored files, beside the index
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
CREDENTIALS = {
    "s3": "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`",
    "az": "AZURE_STORAGE_CONNECTION_STRING or `az login`",
}
STAMP_KEYS = ("size", "ETag", "etag", "md5Hash", "crc32c", "content_md5", "LastModified", "mtime", "updated", "sha")


def is_url(raw: str) -> bool:
    """``True`` for ``scheme://…`` (an object store or any other fsspec URL), not a local path."""
    return bool(URL.match(raw))


def cache_root() -> Path:
    """Where fetched sources are mirrored: ``$CARDTUNE_CACHE/remote`` (default ``~/.cache/cardtune/remote``)."""
    return Path(os.environ.get("CARDTUNE_CACHE", "~/.cache/cardtune")).expanduser() / "remote"


def mirror(url: str, where: str) -> Path:
    """Fetch what ``url`` names into its local mirror; the local path to read in its place (a file, a folder, or
    a glob pattern over the mirror). Raises ``UserInputError`` with one line on any failure."""
    with errors(url, where):
        return _mirror(url, where)


@contextmanager
def errors(url: str, where: str) -> Iterator[None]:
    """Turn what fsspec and the stores raise into one ``UserInputError`` line naming ``url`` and ``where``."""
    scheme = url.split("://", 1)[0].lower()
    try:
        yield
    except UserInputError:
        raise
    except ImportError as exc:
        package = PACKAGES.get(scheme)
        hint = f" (pip install {package})" if package else ""
        raise UserInputError(f"{url}: {first_line(exc)}{hint} ({where})") from None
    except FileNotFoundError:
        raise UserInputError(f"{url}: not found ({where})") from None
    except ValueError as exc:  # fsspec: "Protocol not known: xyz"
        raise UserInputError(f"{url}: {first_line(exc)} ({where})") from None
    except Exception as exc:  # credentials (botocore NoCredentialsError, google auth), permissions, network
        key = "s3" if scheme.startswith("s3") else "gs" if scheme in ("gs", "gcs") else scheme
        creds = CREDENTIALS.get("az" if key in ("az", "abfs") else key)
        hint = f"; check the credentials ({creds})" if creds else ""
        raise UserInputError(f"{url}: cannot access: {first_line(exc)}{hint} ({where})") from None


def _mirror(url: str, where: str) -> Path:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    pattern = any(ch in path for ch in GLOB_CHARS)
    if pattern:
        base = _static_prefix(path)
        found = {p: i for p, i in fs.glob(path, detail=True).items() if i.get("type") != "directory"}
        if not found:
            raise UserInputError(f"{where}: the glob matched no files (looked in {url})")
    else:
        info = fs.info(path)
        if info.get("type") == "directory":
            base = path.rstrip("/")
            found = {p: i for p, i in fs.find(path, detail=True).items() if i.get("type") != "directory"}
            if not found:
                raise UserInputError(f"{url}: the folder is empty ({where})")
        else:
            base = posixpath.dirname(path.rstrip("/"))
            found = {info["name"]: info}
    local = cache_root() / hashlib.sha256(url.encode()).hexdigest()[:24]
    wanted = {_relative(name, base): info for name, info in found.items()}
    _sync(fs, local, wanted)
    files = local / FILES
    if pattern:
        return files / _relative(path, base)
    if info.get("type") == "directory":
        return files
    return files / _relative(info["name"], base)


def _static_prefix(path: str) -> str:
    """The folder above the first component holding a glob character."""
    parts = path.split("/")
    head = next(i for i, part in enumerate(parts) if any(ch in part for ch in GLOB_CHARS))
    return "/".join(parts[:head])


def _relative(name: str, base: str) -> str:
    rel = posixpath.relpath(name, base) if base.strip("/") else name.lstrip("/")
    if rel.startswith("..") or posixpath.isabs(rel):
        raise UserInputError(f"{name}: lies outside {base} (a glob or folder listing went outside its root)")
    return rel


def _stamp(info: dict[str, Any]) -> str:
    """What identifies a remote file's content as the store reports it (size plus any version tag)."""
    return json.dumps({k: str(info[k]) for k in STAMP_KEYS if info.get(k) is not None}, sort_keys=True)


def _sync(fs: Any, local: Path, wanted: dict[str, dict[str, Any]]) -> None:
    """Make ``local`` hold exactly ``wanted`` (relative name → remote info), fetching what is new or changed."""
    local.mkdir(parents=True, exist_ok=True)
    index_file = local / INDEX
    try:
        index: dict[str, str] = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    for stale in set(index) - set(wanted):  # gone from the store: gone from the mirror
        (local / FILES / stale).unlink(missing_ok=True)
        index.pop(stale)
    todo = [rel for rel, info in sorted(wanted.items()) if index.get(rel) != _stamp(info)]
    todo += [rel for rel in sorted(wanted) if rel not in todo and not (local / FILES / rel).is_file()]
    total = sum(int(wanted[rel].get("size") or 0) for rel in todo)
    with _bar(total) as advance:
        for rel in todo:
            remote = wanted[rel]["name"]
            target = local / FILES / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            try:
                fs.get_file(remote, str(tmp))
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
            index[rel] = _stamp(wanted[rel])
            advance(int(wanted[rel].get("size") or 0))
            _write_index(index_file, index)
    _write_index(index_file, index)


def _write_index(path: Path, index: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(index, sort_keys=True, indent=1), encoding="utf-8")
    tmp.replace(path)


@contextmanager
def _bar(total: int) -> Iterator[Callable[[int], None]]:
    """A download bar on a terminal's stderr; nothing when stderr is not a terminal or little is fetched."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal or total <= 16 << 20:
        yield lambda n: None
        return
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        task = bar.add_task("fetch sources", total=total)
        yield lambda n: bar.advance(task, n)
