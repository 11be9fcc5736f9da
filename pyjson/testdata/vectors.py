#!/usr/bin/env python3
"""Wire-contract vectors between Pydantic v2 and the Go package pyjson.

The models below are shaped like the FastAPI template's cached models
(mattwwarren/fastapi-template): the template writes a value to Redis with
``model.model_dump_json()`` and reads it back with
``Model.model_validate_json(data)``, a validation error being a miss.

Two modes:

  python3 vectors.py generate [DIR]
      Write one file per vector, ``DIR/<name>.json`` (default: ``vectors/``
      beside this script), holding exactly the bytes ``model_dump_json()``
      writes (no trailing newline). Other ``*.json`` files in DIR are removed,
      so DIR always holds the current set. The output is deterministic.

  python3 vectors.py validate [FILE ...]
      Validate each document, one per FILE or, without FILEs, one per line of
      stdin, with ``User.model_validate_json`` (lax, as the template reads)
      and again with ``strict=True`` (so a writer cannot lean on coercion).
      For each document print ``User.model_dump_json()`` of the validated
      model on its own line. On the first failure print the error to stderr
      and exit 1.

Needs Python 3.9+ and pydantic 2.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional
from uuid import UUID

import pydantic
from pydantic import AwareDatetime, BaseModel, NaiveDatetime, ValidationError


class Role(str, Enum):
    """Like the template's MembershipRole (a StrEnum): written as its value."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Address(BaseModel):
    street: str
    city: str
    postcode: str


class Membership(BaseModel):
    organization_id: UUID
    role: Role
    joined_at: AwareDatetime


class User(BaseModel):
    id: UUID
    name: str
    email: str
    created_at: NaiveDatetime
    updated_at: AwareDatetime
    birthday: date
    balance: Decimal
    role: Role
    # Required but nullable: Pydantic writes null and, with no default,
    # rejects a document that leaves the field out.
    nickname: Optional[str]
    deleted_at: Optional[NaiveDatetime]
    address: Address
    memberships: List[Membership]
    active: bool
    login_count: int
    score: float


UTC = timezone.utc
PLUS_TWO = timezone(timedelta(hours=2))
MINUS_THREE_THIRTY = timezone(-timedelta(hours=3, minutes=30))

ORG_A = UUID("0b5b1f52-7c1e-4f53-9d0e-2a7c4f6d8e01")
ORG_B = UUID("9f8e7d6c-5b4a-4321-8fed-cba987654321")

HOME = Address(street="1 Analytical Row", city="London", postcode="N1 9GU")


def base(**changes: object) -> User:
    """The baseline user; each vector changes a few fields."""
    fields: Dict[str, object] = dict(
        id=UUID("3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
        name="Ada Lovelace",
        email="ada@example.com",
        created_at=datetime(2024, 1, 2, 3, 4, 5),
        updated_at=datetime(2024, 6, 30, 12, 0, 0, tzinfo=UTC),
        birthday=date(1815, 12, 10),
        balance=Decimal("1234.50"),
        role=Role.ADMIN,
        nickname=None,
        deleted_at=None,
        address=HOME,
        memberships=[
            Membership(
                organization_id=ORG_A,
                role=Role.OWNER,
                joined_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            ),
            Membership(
                organization_id=ORG_B,
                role=Role.MEMBER,
                joined_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
            ),
        ],
        active=True,
        login_count=42,
        score=0.75,
    )
    fields.update(changes)
    return User(**fields)


def vectors() -> Dict[str, User]:
    """Every vector by file name (without .json)."""
    return {
        # Naive datetime without a fraction, aware datetime in UTC ("Z"),
        # Decimal with a trailing zero, Optional fields None.
        "user_basic": base(),
        # Microseconds on naive and aware datetimes; a +02:00 offset.
        "user_offset_plus": base(
            created_at=datetime(2024, 1, 2, 3, 4, 5, 123456),
            updated_at=datetime(2024, 6, 30, 14, 0, 0, 500000, tzinfo=PLUS_TWO),
            memberships=[
                Membership(
                    organization_id=ORG_A,
                    role=Role.ADMIN,
                    joined_at=datetime(2023, 3, 26, 2, 30, 0, tzinfo=PLUS_TWO),
                ),
            ],
        ),
        # A negative offset with minutes; microseconds with trailing zeros
        # (Pydantic writes all six digits); Optional fields set.
        "user_offset_minus": base(
            created_at=datetime(2024, 1, 2, 3, 4, 5, 120000),
            updated_at=datetime(2024, 6, 30, 8, 30, 0, 1, tzinfo=MINUS_THREE_THIRTY),
            nickname="Countess",
            deleted_at=datetime(2025, 11, 27, 0, 0, 0, 1),
            role=Role.MEMBER,
        ),
        # A Decimal past float64's exactness, written without an exponent,
        # and trailing zeros kept.
        "user_decimal_large": base(
            balance=Decimal("12345678901234567890123456789.0100"),
            login_count=9007199254740993,
            score=1e20,
        ),
        # Decimals Python writes with an exponent: small values and values
        # built from an exponent form.
        "user_decimal_exponent": base(
            balance=Decimal("0.0000001"),
            login_count=-9223372036854775808,
            score=-2.5e-8,
        ),
        # The ends of the ranges Python's date and datetime hold; a negative
        # zero Decimal; an empty list (never null); text that JSON escapes
        # differently in Go and Python.
        "user_extremes": base(
            name='Zoë "Ada" <admin> & \u2028 \U0001F600',
            created_at=datetime(1, 1, 1, 0, 0, 0),
            updated_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            birthday=date(9999, 12, 31),
            deleted_at=datetime(9999, 12, 31, 23, 59, 59, 999999),
            balance=Decimal("-0.00"),
            memberships=[],
            active=False,
            login_count=0,
            score=0.1,
        ),
    }


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    want = vectors()
    for old in out.glob("*.json"):
        if old.stem not in want:
            old.unlink()
    for name, user in want.items():
        (out / (name + ".json")).write_bytes(user.model_dump_json().encode("utf-8"))


def validate(docs: List[tuple]) -> int:
    for where, doc in docs:
        try:
            user = User.model_validate_json(doc)
            User.model_validate_json(doc, strict=True)
        except ValidationError as err:
            print(f"{where}: {err}", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(user.model_dump_json().encode("utf-8") + b"\n")
    return 0


def main(argv: List[str]) -> int:
    if int(pydantic.VERSION.split(".")[0]) < 2:
        print(f"pydantic {pydantic.VERSION}: need pydantic 2", file=sys.stderr)
        return 2
    if len(argv) >= 1 and argv[0] == "generate" and len(argv) <= 2:
        out = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parent / "vectors"
        generate(out)
        return 0
    if len(argv) >= 1 and argv[0] == "validate":
        if len(argv) > 1:
            docs = [(name, Path(name).read_bytes()) for name in argv[1:]]
        else:
            lines = sys.stdin.buffer.read().splitlines()
            docs = [(f"stdin line {i + 1}", line) for i, line in enumerate(lines) if line.strip()]
        return validate(docs)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
