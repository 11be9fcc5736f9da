#!/usr/bin/env python3
"""The Python template's cached User model, as Pydantic 2 sees it.

fastapi_template/models/user.py declares ``User(TimestampedTable, UserBase)``
(a SQLModel table); the fields, their types and the order model_dump_json()
writes them are those of the two plain Pydantic bases below. EmailStr is a
str here, to need nothing beyond pydantic.

Reads JSON documents, one per line on stdin. Each is validated as the
template reads a cached value (``User.model_validate_json``) and again with
``strict=True``; then, with ``--name NAME``, its name is changed (standing
for an update made by the Python service); then ``model_dump_json()`` of it
is printed on a line of its own: the bytes the template would SETEX. On the
first failure the error goes to stderr and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Optional
from uuid import UUID

from pydantic import BaseModel, ValidationError


class TimestampedTable(BaseModel):
    id: UUID
    created_at: datetime
    updated_at: datetime


class UserBase(BaseModel):
    email: str
    name: str
    kratos_identity_id: Optional[UUID] = None


class User(TimestampedTable, UserBase):
    pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name")
    args = parser.parse_args()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            user = User.model_validate_json(line)
            User.model_validate_json(line, strict=True)
        except ValidationError as err:
            print(err, file=sys.stderr)
            return 1
        if user.created_at.tzinfo is None or user.updated_at.tzinfo is None:
            print("created_at and updated_at must be aware datetimes (timestamptz)", file=sys.stderr)
            return 1
        if args.name is not None:
            user = user.model_copy(update={"name": args.name})
        print(user.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
