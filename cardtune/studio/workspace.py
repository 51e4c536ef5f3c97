"""The studio's workspace: the open card, the folders it may write to, and conflict-checked atomic saves.

Owns the one rule for paths (a path from the browser is taken relative to the card's folder, resolved with symlinks,
and must land inside the card's folder or the output dir: ``..``, absolute paths elsewhere and symlinks out are
refused), reading a file with the content hash the browser keeps, and ``save``: the file is written (atomically)
only while its bytes still hash to what the browser loaded, so a second tab or another editor never loses an edit.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import Issue, UserInputError

NEW_FILE = "new"  # the hash a browser sends for a file that did not exist when it loaded it


class Refused(Exception):
    """A request the studio will not carry out (a path outside the workspace, a read-only file): one line."""


class Conflict(Exception):
    """The file changed since the browser loaded it; nothing was written."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Opened:
    """The card as the studio sees it now: its text and hash, and the card or the issues that stop it loading."""

    text: str
    hash: str
    card: Card | None
    issues: list[Issue]


@dataclass
class Workspace:
    """The open card (``card_path``), its folder, the dataset output dir and the runs dir."""

    card_path: Path | None
    runs_dir: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.card_path = self.card_path.resolve() if self.card_path is not None else None
        self.runs_dir = self.runs_dir.resolve()

    @property
    def folder(self) -> Path:
        """The card's folder (the working directory while no card is open)."""
        return self.card_path.parent if self.card_path is not None else Path.cwd().resolve()

    @property
    def output_dir(self) -> Path:
        """Where versions are written: the card's ``output.dir``, relative to the working dir (as for ``build``)."""
        opened = self.open_card() if self.card_path is not None else None
        if opened is not None and opened.card is not None:
            out = opened.card.output.dir
        else:  # a card that does not validate still says where its versions are (versions stay browsable)
            out = self._raw_output_dir() or "datasets"
        from cardtune.curate.sources.remote import is_url

        if is_url(out):  # an object store: the versions' local copies (what builds write before they upload)
            from cardtune.curate.store.bucket import local_root

            return local_root(out).resolve()
        return Path(out).expanduser().resolve()

    def _raw_output_dir(self) -> str | None:
        """``output.dir`` as written in a card that does not validate (plain YAML), if it names one."""
        import yaml

        if self.card_path is None:
            return None
        try:
            data = yaml.safe_load(self.card_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        output = data.get("output") if isinstance(data, dict) else None
        value = output.get("dir") if isinstance(output, dict) else None
        return value if isinstance(value, str) and value else None

    def open_card(self) -> Opened:
        """Read and validate the card; a card that does not load comes back with its issues, never raises."""
        from cardtune.curate.card.load import card_from_located
        from cardtune.curate.card.yamlsrc import load_located

        if self.card_path is None:
            return Opened("", NEW_FILE, None, [Issue("", 0, (), "no card is open")])
        try:
            text, h = self.read(self.card_path)
        except UserInputError as exc:
            return Opened("", NEW_FILE, None, exc.issues)
        try:
            card = card_from_located(load_located(text, str(self.card_path)), self.card_path)
        except UserInputError as exc:
            return Opened(text, h, None, exc.issues)
        return Opened(text, h, card, [])

    def cards(self) -> list[Path]:
        """YAML files in the folder (and ``data_cards/``) that look like cards (they have ``tasks:``)."""
        found = []
        for folder in (self.folder, self.folder / "data_cards"):
            for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
                try:
                    head = path.read_text(encoding="utf-8", errors="replace")[:20_000]
                except OSError:
                    continue
                if "\ntasks:" in "\n" + head:
                    found.append(path)
        return found

    # ------------------------------------------------------------------------------------------------ paths

    def writable(self, given: str | Path) -> Path:
        """``given`` (relative to the card's folder) as an absolute path inside the card's folder or the output
        dir; anything else raises ``Refused``."""
        raw = str(given)
        if not raw or "\x00" in raw:
            raise Refused("no file given")
        path = Path(raw).expanduser()
        path = (path if path.is_absolute() else self.folder / path).resolve()
        if any(root in path.parents for root in (self.folder, self.output_dir)):
            return path
        raise Refused(
            f"{raw}: outside the card's folder ({self.folder}) and the output dir; the studio writes only there"
        )

    def relative(self, path: Path) -> str:
        """``path`` relative to the card's folder where it is inside it, else absolute."""
        try:
            return str(path.resolve().relative_to(self.folder))
        except ValueError:
            return str(path)

    # ---------------------------------------------------------------------------------------------- files

    def read(self, path: Path) -> tuple[str, str]:
        """(text, hash) of a UTF-8 file; ``("", NEW_FILE)`` for one that does not exist yet."""
        from cardtune.curate.card.yamlsrc import read_user_file

        if not path.exists():
            return "", NEW_FILE
        text = read_user_file(path)
        return text, digest(text.encode("utf-8"))

    def save(self, given: str | Path, text: str, expected: str) -> tuple[Path, str]:
        """Write ``text`` to ``given`` if the file is still what the browser loaded (hash ``expected``, or
        ``NEW_FILE`` for a file that must not exist yet). Returns (path, new hash); raises ``Conflict``/``Refused``."""
        path = self.writable(given)
        data = text.encode("utf-8")
        with self._lock:  # check and replace as one step: two saves of the same file never interleave
            now = digest(path.read_bytes()) if path.is_file() else NEW_FILE
            if path.exists() and not path.is_file():
                raise Refused(f"{self.relative(path)}: not a file")
            if now != expected:
                raise Conflict(
                    f"{self.relative(path)} changed on disk since this page loaded it (another tab or editor "
                    "saved it); nothing was written. Your text is still here: copy it, reload, and apply it again."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return path, digest(data)
