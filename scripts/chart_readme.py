"""The values table of charts/secops/README.md, generated from values.yaml: one row per value
(dotted path, default, the comment written above it in values.yaml), between the README's
`<!-- values:start -->` and `<!-- values:end -->` markers. values.yaml stays the one place
a value is documented; a test fails when the README's table is not what this makes.
Run through scripts/chart-readme (`--check` only reports)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "secops"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def comments(values_text: str) -> dict[str, str]:
    """The comment block right above each key (a blank line ends a block), by dotted path.
    PyYAML drops comments, so the keys' nesting is read from their indentation."""
    found, block, stack = {}, [], []  # stack: (indent, key)
    for line in values_text.splitlines():
        stripped = line.strip()
        if not stripped:
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = KEY.match(line)
        if match and not stripped.startswith("- "):
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            if block:
                found[".".join(k for _, k in stack)] = " ".join(block)
        block = []
    return found


def rows(values: dict, notes: dict[str, str], prefix: str = "") -> list[tuple[str, str, str]]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            if path in notes:
                out.append((path, "", notes[path]))
            out.extend(rows(value, notes, path + "."))
        else:
            out.append((path, json.dumps(value), notes.get(path, "")))
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(chart: Path = CHART) -> str:
    text = (chart / "values.yaml").read_text()
    lines = ["| value | default | description |", "|---|---|---|"]
    for path, default, note in rows(yaml.safe_load(text), comments(text)):
        lines.append(f"| `{path}` | {f'`{cell(default)}`' if default else ''} | {cell(note)} |")
    return "\n".join(lines)


def render(readme: str, chart: Path = CHART) -> str:
    """The README with its values table regenerated."""
    if START not in readme or END not in readme:
        raise ValueError(f"the chart README lacks the {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n<!-- generated from values.yaml by scripts/chart-readme; do not edit -->\n{table(chart)}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readme = CHART / "README.md"
    current = readme.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print("charts/secops/README.md is stale: run scripts/chart-readme", file=sys.stderr)
            return 1
        return 0
    readme.write_text(wanted)
    print("wrote charts/secops/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
