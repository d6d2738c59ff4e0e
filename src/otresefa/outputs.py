"""Results folders that appear whole or not at all.

:class:`OutputFolder` writes into a hidden temporary sibling of the target folder and moves it into
place only when the ``with`` block succeeds, so an interrupted or failed run never leaves a
half-written folder nor damages earlier results.  Each file is recorded with its caption and
parameters; closing writes ``manifest.json`` and ``index.html``.

A process killed outright (``kill -9``, power loss) can leave a hidden ``.NAME.partial-*`` or
``.NAME.old-*`` sibling behind; both are safe to delete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from otresefa._version import __version__
from otresefa.io import atomic_path, json_ready
from otresefa.render.images import save_png
from otresefa.render.report import write_index_html

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.html"


@dataclass
class OutputEntry:
    """One written file: its folder-relative POSIX ``path``, ``caption``, ``params`` and report ``section``."""

    path: str
    caption: str = ""
    params: dict = field(default_factory=dict)
    section: str = ""


class OutputFolderError(ValueError):
    """The results folder cannot be written where it was asked for."""


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can become a results folder.

    Raises
    ------
    FileExistsError
        When ``path`` is a file, or a non-empty folder and not ``overwrite``.
    OutputFolderError
        When the folder that would hold it cannot be written (read-only, no permission, a file).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; choose another output path")
    if not overwrite and _is_nonempty_dir(path):
        raise FileExistsError(f"{path} already exists and is not empty; pass --overwrite "
                              "(overwrite=True) to replace it, or choose another output folder")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputFolderError(f"cannot create {path}: {ancestor} is a file, not a folder")
    try:  # the only reliable test of writability (permissions, read-only mounts, quotas)
        os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".otresefa-probe-"))
    except OSError as error:
        raise OutputFolderError(f"cannot write the output folder {path}: {ancestor} is not writable "
                                f"({error.strerror})") from None
    return path


class OutputFolder:
    """Context manager for a results folder at ``path``.

    >>> with OutputFolder("results/seed4", overwrite=False, run_params={"seed": 4}) as folder:
    ...     save_png(image, folder.path_for("strip.png"))
    ...     folder.add("strip.png", "mouth, direction 0", {"alphas": [-3, 0, 3]})

    Entering refuses an existing non-empty ``path`` unless ``overwrite``.  Files are written under
    :attr:`root` (a temporary sibling).  On success the folder moves into place; when replacing an
    old folder, the old one is renamed aside first, the new one renamed in, then the old one removed,
    so at every moment one complete folder exists.  On an exception the temporary folder is removed
    and the earlier ``path`` is untouched.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, title: str | None = None,
                 run_params: dict | None = None):
        self.path = Path(path)
        self.overwrite = overwrite
        self.title = title or self.path.name
        self.run_params = dict(run_params or {})
        self.entries: list[OutputEntry] = []
        self._work: Path | None = None

    def _sibling(self, kind: str) -> Path:
        return self.path.parent / f".{self.path.name}.{kind}-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> "OutputFolder":
        check_output_folder(self.path, self.overwrite)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._work = self._sibling("partial")
            self._work.mkdir()
        except OSError as error:
            raise OutputFolderError(f"cannot create the output folder {self.path} ({error.strerror})") from None
        self.entries = []
        return self

    @property
    def root(self) -> Path:
        """The folder files are written into while the context is open."""
        if self._work is None:
            raise RuntimeError("the output folder is not open; use it in a 'with' block")
        return self._work

    def path_for(self, relpath: str | os.PathLike) -> Path:
        """Where to write ``relpath`` (relative, inside the folder); its parent folders are created."""
        relative = PurePosixPath(Path(relpath).as_posix())
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"output files need a relative path inside the folder, got {str(relpath)!r}")
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add(self, relpath: str | os.PathLike, caption: str = "", params: dict | None = None,
            section: str = "") -> OutputEntry:
        """Record the written file ``relpath`` for the manifest and the index."""
        target = self.path_for(relpath)
        if not target.is_file():
            raise FileNotFoundError(f"cannot record {relpath}: no such file was written in the output folder")
        entry = OutputEntry(target.relative_to(self.root).as_posix(), str(caption), json_ready(dict(params or {})),
                            str(section))
        self.entries.append(entry)
        return entry

    def add_image(self, relpath: str, image, caption: str = "", params: dict | None = None,
                  section: str = "") -> OutputEntry:
        """Save the PIL ``image`` as PNG at ``relpath`` and record it."""
        save_png(image, self.path_for(relpath))
        return self.add(relpath, caption, params, section)

    def manifest(self) -> dict:
        """What ``manifest.json`` holds: title, time, library version, run parameters, files."""
        return {"title": self.title, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "library_version": __version__, "run_params": json_ready(self.run_params),
                "files": [asdict(entry) for entry in self.entries]}

    def _finish(self) -> None:
        with atomic_path(self.root / MANIFEST_NAME) as temp:
            temp.write_text(json.dumps(self.manifest(), indent=2, allow_nan=False), encoding="utf-8")
        write_index_html(self.root, self.title, [asdict(entry) for entry in self.entries],
                         json_ready(self.run_params), extra_links=[MANIFEST_NAME])
        check_output_folder(self.path, self.overwrite)  # another process may have filled the target meanwhile
        if not self.path.exists():
            os.rename(self.root, self.path)
            return
        aside = self._sibling("old")
        os.rename(self.path, aside)
        try:
            os.rename(self.root, self.path)
        except BaseException:
            os.rename(aside, self.path)
            raise
        shutil.rmtree(aside)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        try:
            if exc_type is None:
                self._finish()
        finally:
            # after a successful move the temporary folder no longer exists; otherwise drop it
            shutil.rmtree(self.root, ignore_errors=True)
            self._work = None
        return False
