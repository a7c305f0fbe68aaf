#!/usr/bin/env python3
"""Writes the README's tables of roles from the compiled-in default policy.

    python scripts/roles_table.py          # rewrite the part of README.md between the markers
    python scripts/roles_table.py --check  # exit 1 when README.md is out of date

The tables come from `picklefence.Policy.ml_default()` (the policy data files, as the analyzer
reads them): how many names each library family allows in each role, then every name a pickle
may call, with its argument schema and the reviewed reason the call is safe.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import picklefence

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- roles-table: begin (scripts/roles_table.py writes this part) -->"
END = "<!-- roles-table: end -->"
ROLES = ("reconstruct", "value", "argument", "call")


def role_of(line: str) -> str:
    return line.split("(", 1)[0].strip()


def family(module: str) -> str:
    top = module.split(".", 1)[0]
    known = {"numpy", "torch", "sklearn", "pandas", "scipy", "joblib", "transformers", "accelerate", "trl"}
    return top if top in known else "stdlib and others"


def render() -> str:
    entries = picklefence.Policy.ml_default().entries_with_roles()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    calls = []
    for module, name, roles, reason in entries:
        for line in roles:
            counts[family(module)][role_of(line)] += 1
            if role_of(line) == "call":
                calls.append((module, name, line, reason or ""))
    out = [
        "| family | reconstruct | value | argument | call |",
        "|---|---:|---:|---:|---:|",
    ]
    for fam in sorted(counts):
        row = counts[fam]
        out.append(f"| {fam} | " + " | ".join(str(row[r]) for r in ROLES) + " |")
    total = collections.Counter()
    for row in counts.values():
        total.update(row)
    out.append("| **all** | " + " | ".join(f"**{total[r]}**" for r in ROLES) + " |")
    out += [
        "",
        f"<details><summary>Every name a pickle may call ({len(calls)}), its schema and why the call "
        "is safe</summary>",
        "",
        "| name | schema | why it is safe |",
        "|---|---|---|",
    ]
    for module, name, line, reason in calls:
        schema = line.replace("|", "\\|")
        out.append(f"| `{module}.{name}` | `{schema}` | {reason.replace('|', '/')} |")
    out += ["", "</details>"]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    opts = ap.parse_args()
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if opts.check:
        if new != text:
            print("README.md roles table is out of date: run python scripts/roles_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
