"""Reads cache values the way Python readers of the shared Redis do.

Usage: python3 readers.py FILE...

A FILE ending in .json holds plain JSON, a user as the Python template
caches it: every reader must accept it. Any other FILE holds an enveloped
value: every reader must refuse it with the exception a cache reader
catches (ValueError from json.loads, ValidationError from Pydantic,
UnicodeDecodeError from decoding), so the template counts a miss rather
than serving data. Prints one line per file and reader; exits 1 on any
other outcome.
"""

import json
import sys
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError


class User(BaseModel):
    id: int
    email: str


class AnyJSON(RootModel[Any]):
    """The most lenient model: any JSON document validates."""


def readers(raw):
    """(name, call, exception that means "unreadable") for each reader."""
    lenient = raw.decode("utf-8", errors="replace")
    return [
        ("json.loads(bytes)", lambda: json.loads(raw), ValueError),
        ("User.model_validate_json(bytes)", lambda: User.model_validate_json(raw), ValidationError),
        ("AnyJSON.model_validate_json(bytes)", lambda: AnyJSON.model_validate_json(raw), ValidationError),
        ("bytes.decode('utf-8')", lambda: raw.decode("utf-8"), UnicodeDecodeError),
        ("json.loads(text decoded with errors='replace')", lambda: json.loads(lenient), ValueError),
        ("AnyJSON.model_validate_json(text decoded with errors='replace')",
         lambda: AnyJSON.model_validate_json(lenient), ValidationError),
    ]


def main(paths):
    failed = False
    for path in paths:
        with open(path, "rb") as f:
            raw = f.read()
        plain = path.endswith(".json")
        for name, call, refusal in readers(raw):
            try:
                call()
                outcome = "accepted"
            except refusal as e:
                outcome = "refused with " + type(e).__name__
            except Exception as e:  # any other exception escapes a cache reader
                outcome = "raised " + type(e).__name__ + ": " + str(e)
                failed = True
                print(f"FAIL {path}: {name}: {outcome}")
                continue
            ok = (outcome == "accepted") == plain
            failed |= not ok
            print(f"{'ok  ' if ok else 'FAIL'} {path}: {name}: {outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
