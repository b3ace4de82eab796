"""Copy the entries of requirements.lock that one image needs, verbatim.

Reads the image's resolved names (``uv pip compile`` output, constrained by
the lock) on stdin and writes those packages' blocks from the lock, hashes and
markers included, so an image can only ever install what the lock pins.
"""

import re
import sys

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def blocks(lock_text: str) -> dict[str, str]:
    """Each pinned package of the lock with its continuation lines."""
    found: dict[str, str] = {}
    current: list[str] | None = None
    for line in lock_text.splitlines():
        match = _NAME.match(line)
        if match:
            current = [line]
            found[normalise(match.group(1))] = current  # type: ignore[assignment]
        elif current is not None and line.startswith("    --hash"):
            current.append(line)
        else:
            current = None
    return {name: "\n".join(lines) for name, lines in found.items()}  # type: ignore[arg-type]


def main(lock_path: str, image: str) -> None:
    with open(lock_path, encoding="utf-8") as f:
        pinned = blocks(f.read())
    wanted = sorted({normalise(m.group(1)) for line in sys.stdin if (m := _NAME.match(line))})
    missing = [name for name in wanted if name not in pinned]
    if missing:
        sys.exit(f"lock_subset: {', '.join(missing)} resolved for {image} but not in {lock_path}: run make lock")
    print(f"# The {image} image's share of requirements.lock, copied verbatim by `make lock`.")
    print("# pip install --require-hashes -r this file; never edit by hand.")
    for name in wanted:
        print(pinned[name])


if __name__ == "__main__":
    main(*sys.argv[1:3])
