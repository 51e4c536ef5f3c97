"""Dataset versions in an object store: ``output.dir: s3://bucket/datasets`` (or any fsspec URL).

A build still writes each version locally first — atomically, in a local copy of the output root under
``$CARDTUNE_CACHE/out/<sha of the URL>/`` — and then copies it to ``<output.dir>/<name>/<id>/``, every file before
``manifest.json``: readers take a folder without a manifest for an unfinished one, so a copy cut short is never
taken for a version. A version already in the store (the same manifest there) is not copied again.

The other way, a build whose local copy is missing (another machine, a cleared cache) looks in the store first: a
complete remote version is fetched — each file checked against the sha256 its manifest records — instead of being
rebuilt, and ``cardtune.load("s3://…/<name>/<id>")`` reads a version straight from the store the same way.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from cardtune.curate.errors import UserInputError
from cardtune.curate.sources import remote
from cardtune.curate.store.fingerprint import sha256_file
from cardtune.curate.store.manifest import parse_manifest
from cardtune.curate.store.versions import MANIFEST, staging_dir

WHERE = "output.dir"


def local_root(url: str) -> Path:
    """The local copy of an output root that is a URL (where builds write before they upload)."""
    return remote.cache_root().parent / "out" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:24]


def join(url: str, *parts: str) -> str:
    """``url`` with path components appended (``s3://b/datasets`` + ``name`` → ``s3://b/datasets/name``)."""
    return "/".join([url.rstrip("/"), *parts])


def upload(local: Path, url: str) -> bool:
    """Copy a complete local version to ``url``, the manifest last; ``False`` when the store already has it."""
    from fsspec.core import url_to_fs

    manifest = (local / MANIFEST).read_bytes()
    with remote.errors(url, WHERE):
        fs, path = url_to_fs(url)
        root = path.rstrip("/")
        target = f"{root}/{MANIFEST}"
        if fs.exists(target):
            if fs.cat_file(target) == manifest:
                return False
            fs.rm_file(target)  # a replaced version (--force): unfinished until its new manifest is in
        for file in sorted(local.iterdir()):
            if file.is_file() and file.name != MANIFEST:
                fs.put_file(str(file), f"{root}/{file.name}")
        fs.pipe_file(target, manifest)
    return True


def download(url: str, local: Path) -> bool:
    """Fetch the complete version at ``url`` into ``local`` (atomically, files checked against the manifest);
    ``False`` when the store holds no complete version there, or one whose manifest this cardtune cannot read."""
    from fsspec.core import url_to_fs

    with remote.errors(url, WHERE):
        fs, path = url_to_fs(url)
        root = path.rstrip("/")
        source = f"{root}/{MANIFEST}"
        if not fs.exists(source):
            return False
        with staging_dir(local.parent, local.name) as tmp:
            fs.get_file(source, str(tmp / MANIFEST))
            try:
                manifest = parse_manifest(tmp / MANIFEST)
            except UserInputError:  # written by another cardtune (or corrupt): rebuilt here and uploaded over it
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            for name, digest in sorted(manifest.files.items()):
                fs.get_file(f"{root}/{name}", str(tmp / name))
                if sha256_file(tmp / name) != digest:
                    raise UserInputError(
                        f"{join(url, name)}: does not match the sha256 its manifest records (a damaged or partial "
                        "copy in the store); rebuild with --force to replace it"
                    )
            tmp.rename(local)
    return True


def load_url(url: str) -> Path:
    """A local copy of the version at ``url`` (fetched once into the cache); an error when there is none."""
    local = local_root(url)  # one folder per URL, beside the local copies of output roots
    if not (local / MANIFEST).is_file() and not download(url, local):
        raise UserInputError(f"{url}: no dataset version there (no {MANIFEST})")
    return local
