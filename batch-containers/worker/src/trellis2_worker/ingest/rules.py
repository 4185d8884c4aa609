"""The archive rules (extensions, ignored paths, limits), read from archive_rules.json.

That file is the one source: Java's zip inspection reads the same file (copied into core's jar), so Prepare and the
worker cannot disagree on what counts as a 3D object, what is skipped, or how big an archive may be.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import PurePosixPath

RULES: dict = json.loads(resources.files(__package__).joinpath("archive_rules.json").read_text("utf-8"))

OBJECT_EXTENSIONS: tuple[str, ...] = tuple(RULES["object_extensions"])
SUPPORTED_FORMATS: tuple[str, ...] = tuple(e.lstrip(".") for e in OBJECT_EXTENSIONS)
MAX_ARCHIVE_BYTES: int = RULES["max_archive_bytes"]
MAX_UNCOMPRESSED_BYTES: int = RULES["max_uncompressed_bytes"]
MAX_ENTRIES: int = RULES["max_entries"]
MAX_CENTRAL_DIRECTORY_BYTES: int = RULES["max_central_directory_bytes"]
MAX_NAME_BYTES: int = RULES["max_name_bytes"]
MAX_NAME_PART_BYTES: int = RULES["max_name_part_bytes"]
PREPARED_DATASET_FILE: str = RULES["prepared_dataset_file"]
PREPARED_DATASET_MAX_DEPTH: int = RULES["prepared_dataset_max_depth"]
PREPARED_DATASET_MAX_BYTES: int = RULES["prepared_dataset_max_bytes"]
_IGNORED_PREFIX: str = RULES["ignored_name_prefix"]
_IGNORED_FOLDERS = frozenset(RULES["ignored_folders"])


def name_parts(name: str) -> list[str]:
    """The path's parts as both readers see them: backslashes are separators, empty and '.' parts are dropped."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def is_ignored(name: str) -> bool:
    """Hidden files/folders (any part starting with '.') and macOS resource forks are not user content."""
    return any(p.startswith(_IGNORED_PREFIX) or p in _IGNORED_FOLDERS for p in name_parts(name))


def object_format(name: str) -> str | None:
    """'glb', 'obj', ... when the name has a supported 3D extension (any case), else None."""
    suffix = PurePosixPath(name).suffix.lower()
    return suffix.lstrip(".") if suffix in OBJECT_EXTENSIONS else None
