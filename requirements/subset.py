"""Print the part of requirements/lock.txt that one environment installs, hashes included.

requirements/lock.txt is the one lock (pip-compile --generate-hashes over bench.in, which includes every other
.in file). An environment is named by its .in file (serve, build, ops, dev, bench); its subset is the transitive
closure of that file's requirements (its own lines and those of the files it includes with -r), followed through
pip-compile's `# via` annotations: a locked package belongs to the subset when the .in files name it, or when a
package already in the subset is among the ones it is `# via`. The output is a requirements file for
`pip install --require-hashes -r FILE`; the Makefile, the Dockerfile and scripts/docker_steps.sh install it like so:

    python3 requirements/subset.py serve > /tmp/serve.txt && pip install --require-hashes --no-deps -r /tmp/serve.txt

Exits 1, printing nothing, if a requirement of the .in files is not in the lock (run `make lock`).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement)(?:\s+|=)(\S+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def in_files(name: str, directory: Path = HERE) -> list[Path]:
    """The .in file `name` and, recursively, every .in file it includes with -r."""
    seen: list[Path] = []
    pending = [directory / (name if name.endswith(".in") else f"{name}.in")]
    while pending:
        path = pending.pop().resolve()
        if path in seen:
            continue
        if not path.is_file():
            raise SystemExit(f"subset: no such requirements file: {path}")
        seen.append(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := _INCLUDE.match(line):
                pending.append(path.parent / match.group(1))
    return seen


def direct_names(paths: list[Path]) -> set[str]:
    """Project names that the .in files require (options and -r lines are skipped)."""
    names = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = re.split(r"(^|\s)#", line, maxsplit=1)[0].strip()
            if line and not line.startswith("-") and (match := _NAME.match(line)):
                names.add(canonical(match.group(1)))
    return names


def parse_lock(lock: Path) -> dict[str, tuple[list[str], set[str], set[str]]]:
    """{name: (requirement and hash lines, packages it is `# via`, .in file names it is `# via -r`)}."""
    entries: dict[str, tuple[list[str], set[str], set[str]]] = {}
    current = None
    in_via = False
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            in_via = False
            continue
        if not raw[0].isspace() and not line.startswith("#"):  # a new entry: `name==version \`
            match = _NAME.match(line)
            if match is None:
                raise SystemExit(f"subset: cannot read lock line: {raw}")
            current = ([raw], set(), set())
            entries[canonical(match.group(1))] = current
            in_via = False
            continue
        if current is None:
            continue  # the header
        if line.startswith("--hash="):
            current[0].append(raw)
            continue
        if not line.startswith("#"):
            raise SystemExit(f"subset: cannot read lock line: {raw}")
        comment = line.lstrip("#").strip()
        if re.match(r"via(\s|$)", comment):  # `# via x` (one parent) or `# via` followed by `#   x` lines
            in_via = True
            comment = comment[3:].strip()
        elif not in_via or not line.startswith("#   "):
            in_via = False  # another comment (the unsafe-packages note): ends the annotation
            continue
        for item in filter(None, (part.strip() for part in comment.split(","))):
            if item.startswith(("-r ", "-c ")):
                current[2].add(Path(item[3:].strip()).name)
            elif "(" not in item:  # `name (pyproject.toml)` style sources are not packages
                current[1].add(canonical(item))
    return entries


def subset(name: str, lock: Path = HERE / "lock.txt") -> list[str]:
    """The lock's lines for environment `name`, in the lock's order."""
    paths = in_files(name, lock.parent)
    entries = parse_lock(lock)
    wanted = direct_names(paths)
    missing = sorted(wanted - entries.keys())
    if missing:
        raise SystemExit(f"subset: {lock.name} lacks {', '.join(missing)}: run `make lock`")
    file_names = {path.name for path in paths}
    chosen = wanted | {pkg for pkg, (_, _, files) in entries.items() if files & file_names}
    grown = True
    while grown:
        grown = False
        for pkg, (_, parents, _) in entries.items():
            if pkg not in chosen and parents & chosen:
                chosen.add(pkg)
                grown = True
    lines = [f"# {name}: the subset of requirements/{lock.name} for {', '.join(sorted(file_names))}"]
    for pkg, (entry_lines, _, _) in entries.items():
        if pkg in chosen:
            lines.extend(entry_lines)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(f"usage: {Path(sys.argv[0]).name} {{serve,build,ops,dev,bench}}", file=sys.stderr)
        return 2
    lines = subset(argv[0])
    last = len(lines) - 1
    for i, line in enumerate(lines):
        # The last hash line of an entry ends in ` \` only when another hash follows: keep the file well-formed.
        print(line.rstrip(" \\") if i == last or not lines[i + 1].lstrip().startswith("--hash=") else line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
