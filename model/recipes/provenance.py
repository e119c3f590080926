"""What a bundle records about its inputs: file hashes and package versions."""
import hashlib
import importlib.metadata
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_version(dist: str) -> str:
    """Installed distribution version, or 'unknown'."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
