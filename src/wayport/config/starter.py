"""The commented starter file that ``wayport init`` writes (``starter.yaml`` beside this
module, shipped in the wheel).

    write_starter(Path("wayport.yaml"))   # refuses to overwrite unless force=True
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from wayport.core.errors import ConfigError


def starter_text() -> str:
    return files("wayport.config").joinpath("starter.yaml").read_text(encoding="utf-8")


def write_starter(path: Path, *, force: bool = False) -> Path:
    """Write the starter to ``path`` (a folder gets ``wayport.yaml`` inside it)."""
    if path.is_dir():
        path = path / "wayport.yaml"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_text(), encoding="utf-8")
    return path
