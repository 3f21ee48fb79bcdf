"""The course folder as nbgrader lays it out, read from its `nbgrader_config.py`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader


@dataclass
class Course:
    root: Path
    config: Config

    @classmethod
    def load(cls, root: str | Path = ".") -> Course:
        root = Path(root).resolve()
        config = Config()
        if (root / "nbgrader_config.py").exists():
            config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
        return cls(root, config)

    def _dir(self, trait: str, default: str) -> Path:
        value = self.config.CourseDirectory.get(trait, default)
        return self.root / value

    @property
    def source(self) -> Path:
        return self._dir("source_directory", "source")

    @property
    def release(self) -> Path:
        return self._dir("release_directory", "release")

    @property
    def submitted(self) -> Path:
        return self._dir("submitted_directory", "submitted")

    @property
    def autograded(self) -> Path:
        return self._dir("autograded_directory", "autograded")

    @property
    def feedback(self) -> Path:
        return self._dir("feedback_directory", "feedback")

    @property
    def db_url(self) -> str:
        """`CourseDirectory.db_url` (the course's nbgrader_config.py sets it from GRADEBOOK_URL), else nbgrader's
        default sqlite file at the course root."""
        url = self.config.CourseDirectory.get("db_url")
        return driver_url(url) if url else f"sqlite:///{self.root / 'gradebook.db'}"

    @property
    def cell_timeout(self) -> int:
        return int(self.config.Execute.get("timeout", 30) or 30)

    def source_notebooks(self, assignment: str) -> list[Path]:
        return sorted(p for p in (self.source / assignment).glob("*.ipynb"))

    def assignments(self) -> list[str]:
        return sorted(p.name for p in self.source.iterdir() if p.is_dir() and list(p.glob("*.ipynb")))


def driver_url(url: str) -> str:
    """`postgresql://...` names psycopg 3 in SQLAlchemy 2.1; the course installs psycopg2: say so explicitly."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old one or the whole new one, never a part (temporary + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data)
    os.replace(tmp, path)
