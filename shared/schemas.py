"""Export the JSON Schema of every event to docs/schemas/, or check that the files are current.

python -m shared.schemas export docs/schemas
python -m shared.schemas check docs/schemas   (exit 1 and a list of drifted files)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.topics import ALL_TOPICS


def rendered_schemas() -> dict[str, str]:
    """Return file name -> JSON Schema text for every topic's payload."""
    out: dict[str, str] = {}
    for topic in ALL_TOPICS:
        schema: dict[str, Any] = topic.payload.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:vitals-alerting:event:{topic.name}"
        schema["x-topic"] = topic.name
        schema["x-key"] = topic.key_field
        out[f"{topic.name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export(directory: Path) -> list[Path]:
    """Write every schema file into directory; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drifted(directory: Path) -> list[str]:
    """Return the schema files that are missing, stale or no longer produced."""
    expected = rendered_schemas()
    problems = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]
    problems += [p.name for p in directory.glob("*.schema.json") if p.name not in expected]
    return sorted(problems)


def main(argv: list[str]) -> int:
    """CLI entry point."""
    if len(argv) != 2 or argv[0] not in ("export", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[1])
    if argv[0] == "export":
        for path in export(directory):
            print(f"wrote {path}")
        return 0
    problems = drifted(directory)
    for name in problems:
        print(f"schema drift: {directory / name} (run `make schemas`)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
