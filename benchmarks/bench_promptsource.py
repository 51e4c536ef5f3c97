"""How much of promptsource converts: every ``templates.yaml`` of the promptsource 0.2.3 release, imported.

Reads the release's sdist (downloaded with pip, or given with ``--sdist``: the ``.tar.gz`` or its extracted
folder), runs ``convert_promptsource`` on each ``templates.yaml`` in it, and prints converted / skipped
counts, the skip reasons grouped, the conversion notes grouped, how many became ``jinja`` + ``split``
templates (``|||`` inside a Jinja block and the like), and the conversion percentage. "Converted" means the
template loads as a cardtune template: parsed, checked by the sandbox, compiled. Exits 1 below ``--target``.

    python benchmarks/bench_promptsource.py                       # pip download promptsource==0.2.3
    python benchmarks/bench_promptsource.py --sdist /tmp/ps/promptsource-0.2.3.tar.gz
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import yaml

from cardtune.curate.errors import UserInputError
from cardtune.curate.templating.promptsource import convert_promptsource

VERSION = "0.2.3"


def download(dest: Path) -> Path:
    """The release's sdist, via pip (promptsource 0.2.3 declares Python < 3.10, hence --ignore-requires-python)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    cmd += ["--ignore-requires-python", f"promptsource=={VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    return next(dest.glob("promptsource-*.tar.gz"))


def template_files(sdist: Path) -> Iterator[tuple[str, str]]:
    """(path inside the release, text) of every ``templates.yaml``, sorted by path."""
    if sdist.is_dir():
        for path in sorted(sdist.rglob("templates.yaml")):
            yield path.relative_to(sdist).as_posix(), path.read_text(encoding="utf-8")
        return
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith("/templates.yaml")), key=lambda m: m.name)
        for member in members:
            handle = tar.extractfile(member)
            if handle is not None:
                yield member.name, handle.read().decode("utf-8")


def count_templates(text: str) -> int:
    """Templates a file holds, from its YAML nodes (no tag is constructed), for files that fail as a whole."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        if key.value == "templates" and isinstance(value, yaml.MappingNode):
            return len(value.value)
    return 0


def _group(reason: str) -> str:
    """A skip reason without its specifics (names, lines), so like reasons count together."""
    return re.sub(r"`[^`]*`|'[^']*'|\(line \d+\)|\([^)]*\)$", "…", reason).strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", type=Path, help="promptsource-0.2.3.tar.gz or its extracted folder")
    ap.add_argument("--target", type=float, default=99.0, help="lowest conversion percentage that passes")
    ap.add_argument("--show", type=int, default=3, help="examples printed per skip reason")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download(Path(tmp))
        start = time.perf_counter()
        total = converted = whole = files = 0
        skipped: dict[str, list[str]] = {}
        notes: Counter[str] = Counter()
        failed: list[tuple[str, int, str]] = []
        for name, text in template_files(sdist):
            files += 1
            try:
                conv = convert_promptsource(text, name)
            except UserInputError as exc:
                n = count_templates(text)
                total += n
                failed.append((name, n, str(exc).splitlines()[0]))
                continue
            total += len(conv.templates) + len(conv.skipped)
            converted += len(conv.templates)
            whole += sum(t.jinja is not None for t in conv.templates)
            for template, reason in conv.skipped:
                skipped.setdefault(_group(reason), []).append(f"{name}: {template!r}: {reason}")
            notes.update(note for ns in conv.notes.values() for note in ns if not note.startswith("metadata keys"))
        seconds = time.perf_counter() - start
    pct = 100.0 * converted / total if total else 0.0
    print(f"promptsource {VERSION}: {files} templates.yaml files, {total} templates ({seconds:.1f} s)")
    print(f"converted  {converted:5d}  ({whole} as `jinja` + `split`: rendered whole, then split at `|||`)")
    print(f"skipped    {sum(len(v) for v in skipped.values()):5d}")
    for reason, examples in sorted(skipped.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(examples):5d}  {reason}")
        for example in examples[: args.show]:
            print(f"           e.g. {example}")
    print(f"in files that fail whole  {sum(n for _, n, _ in failed):5d}")
    for _name, n, reason in failed:
        print(f"  {n:5d}  {reason}")
    for note, n in notes.most_common():
        print(f"note  {n:5d}  {note}")
    print(f"conversion: {converted} / {total} = {pct:.2f}% (target >= {args.target:g}%)")
    return 0 if pct >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
