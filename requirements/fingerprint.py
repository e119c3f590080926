"""Fingerprint the inputs of requirements/lock.txt, and stamp it into the lock's header.

The inputs are what decides the resolution: the requirement lines of every requirements/*.in file (comments and
blank lines left out, so a comment-only edit needs no new lock), and, from pyproject.toml and client/pyproject.toml,
build-system.requires, project.requires-python, project.dependencies and project.optional-dependencies. The
fingerprint is the sha256 of a canonical JSON document of them. `make lock` runs pip-compile and then

    python3 requirements/fingerprint.py --stamp requirements/lock.txt

which writes the line `# inputs-sha256: <hex>` at the end of pip-compile's header; tests/test_lock.py recomputes
the fingerprint and fails when it differs, i.e. when an input changed without `make lock`. Without arguments it
prints the fingerprint. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECTS = ("pyproject.toml", "client/pyproject.toml")
PREFIX = "# inputs-sha256: "


def requirement_lines(path: Path) -> list[str]:
    """The lines of a requirements file that pip reads, without comments and surrounding whitespace."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def inputs(root: Path = ROOT) -> dict:
    """Everything the fingerprint covers, as plain data."""
    data: dict = {"scheme": 1, "in": {}, "pyproject": {}}
    for path in sorted((root / "requirements").glob("*.in")):
        data["in"][path.name] = requirement_lines(path)
    for name in PYPROJECTS:
        doc = tomllib.loads((root / name).read_text(encoding="utf-8"))
        project = doc.get("project", {})
        data["pyproject"][name] = {
            "build-system.requires": doc.get("build-system", {}).get("requires", []),
            "requires-python": project.get("requires-python"),
            "dependencies": project.get("dependencies", []),
            "optional-dependencies": project.get("optional-dependencies", {}),
        }
    return data


def compute(root: Path = ROOT) -> str:
    """The sha256 (hex) of the canonical JSON of inputs(root)."""
    blob = json.dumps(inputs(root), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def recorded(lock: Path) -> str | None:
    """The fingerprint stamped in a lock file's header, or None."""
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(PREFIX):
            return line[len(PREFIX):].strip()
        if line and not line.startswith("#"):
            return None  # past the header
    return None


def stamp(lock: Path, root: Path = ROOT) -> str:
    """Write `# inputs-sha256: ...` as the last line of the lock's leading comment block (replacing an old one)."""
    lines = [line for line in lock.read_text(encoding="utf-8").splitlines() if not line.startswith(PREFIX)]
    end = 0
    while end < len(lines) and lines[end].startswith("#"):
        end += 1
    digest = compute(root)
    note = f"{PREFIX}{digest}"
    # pip-compile's header ends with a bare `#` line: keep it last, the fingerprint goes just above it.
    at = end - 1 if end and lines[end - 1] == "#" else end
    lines[at:at] = [note]
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return digest


def main(argv: list[str]) -> int:
    if not argv:
        print(compute())
        return 0
    if len(argv) == 2 and argv[0] == "--stamp":
        print(stamp(Path(argv[1])))
        return 0
    print(f"usage: {Path(sys.argv[0]).name} [--stamp LOCK]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
