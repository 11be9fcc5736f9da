// Package pyjson holds the Go types for the Pydantic v2 JSON forms that no
// standard Go type round-trips, and documents the mapping between a Pydantic
// model and a Go struct, so that a Go service and a Python service can share
// cached values in one Redis.
//
// The Python service (the FastAPI template's cache) writes a value with
// SETEX key ttl model.model_dump_json() and reads it with
// Model.model_validate_json(data); a value that does not validate is a miss
// for it, again and again until the key expires. A Go struct that mirrors
// the model field by field, with the types below, reads what Python writes
// and writes what Python reads:
//
//	Pydantic field            JSON form                          Go field
//	UUID                      "3f2504e0-4f89-41d3-9a0c-..."      string (write it lower-case, hyphenated)
//	str                       "text"                             string
//	int                       42                                 int64 (Python's int has no bound)
//	float                     0.75, 1e+20                        float64
//	bool                      true                               bool
//	datetime, naive           "2024-01-02T03:04:05[.ffffff]"     pyjson.NaiveTime
//	datetime, aware           "2024-01-02T03:04:05[.ffffff]Z"    time.Time
//	                          "...+02:00", "...-03:30"
//	date                      "2024-01-02"                       pyjson.Date
//	Decimal                   "1234.50", "1E-7"                  pyjson.Decimal
//	Enum with str values      "admin"                            string, or a string type
//	Optional[X], None         null (the key is always there)     *X, never with omitempty
//	nested model              {...}                              struct
//	list[X]                   [...]                              []X, never nil
//
// A json tag on every field gives the model's field name; no field has
// omitempty.
//
// Bytes written by Go validate in Python to the same model. For NaiveTime,
// Date and Decimal they are also the bytes Python writes for the same value;
// for the other types the value is the same but the bytes may differ:
// encoding/json writes 1e+20 as 100000000000000000000, an aware time with
// trailing zeros trimmed from its fraction (.5+02:00 where Python writes
// .500000+02:00), and escapes <, >, & and U+2028 in strings.
//
// # Pitfalls
//
//   - omitempty drops a field whose value is empty. Pydantic requires every
//     field without a default, nullable or not, so the Python service reads
//     the value as invalid, a miss. Keep a nil pointer as null.
//   - A nil slice encodes as null, which a list field refuses; build empty
//     slices with make or []T{}. Decoding [] gives an empty slice back.
//   - Decimal as float64 loses exactness (12345678901234567890.01 does not
//     survive), and Pydantic writes Decimal as a string, which a float64
//     field refuses. Use pyjson.Decimal, or string.
//   - A naive datetime carries no zone. It means whatever zone the Python
//     service's code and database agreed on (often UTC, from
//     datetime.utcnow() or a "timestamp without time zone" column); read it
//     with NaiveTime.In in that zone, and build one with Naive from a time
//     in that zone.
//   - Pydantic's plain datetime type holds naive and aware values alike and
//     writes each in its own form: the Go type follows the values the
//     Python code puts in, not the annotation. A timestamptz column (the
//     template's created_at and updated_at) gives aware values, so
//     time.Time. Pydantic's NaiveDatetime and AwareDatetime types pin it.
//   - An aware datetime keeps only its UTC offset: a time.Time in a named
//     zone comes back as a fixed offset. Compare times with Equal, not ==.
//   - Python's datetime holds microseconds: a time.Time with nanoseconds
//     validates, but Python drops the digits past the sixth. Python has no
//     leap seconds, and years run from 1 to 9999.
//   - Pydantic writes a float's inf and nan as null, and decoding null into
//     a float64 leaves it unchanged, silently. Use *float64 where a float
//     may not be finite.
//   - An int past int64, or a Python Enum value the Go side does not know,
//     fails on one side only: decoding in Go, or validating in Python.
//
// NaiveTime, Date and Decimal decode strictly: only the forms Pydantic
// writes (and, for NaiveTime and Decimal, a few equivalent spellings), and
// never null into a non-pointer, so that a Go struct that does not match the
// model fails loudly instead of reading zero values.
//
// The package's tests hold the contract: testdata/vectors.py writes a
// vector per case with model_dump_json, every vector decodes into the Go
// mirror of the model with the expected values, and what Go writes back
// validates in Python to the same model.
package pyjson
