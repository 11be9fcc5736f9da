package main

import (
	"strings"
	"time"
)

// User mirrors the Python template's User model (fastapi_template/models/user.py:
// UserBase's fields, then TimestampedTable's), field for field and in the
// order model_dump_json writes them, so that either service reads what the
// other caches under the same key. The rules are pyjson's: a json tag with
// the model's field name on every field, no omitempty, a pointer for an
// Optional field (written as null). created_at and updated_at are
// timestamptz columns, which the Python side reads as aware datetimes: a
// time.Time, kept in UTC as asyncpg returns them. (A naive datetime, from a
// "timestamp without time zone" column, would be a pyjson.NaiveTime.)
type User struct {
	Email            string    `json:"email"`
	Name             string    `json:"name"`
	KratosIdentityID *string   `json:"kratos_identity_id"`
	ID               string    `json:"id"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// maxNameLength is the template's MAX_NAME_LENGTH.
const maxNameLength = 100

// canonicalUUID returns s as Python's str(UUID(s)) writes it: lower case,
// hyphenated. Cache keys are built from that form, so a Go service and the
// Python one build the same key whatever form the request used. It accepts
// the hyphenated form and 32 bare hex digits, in either case.
func canonicalUUID(s string) (string, bool) {
	var hex []byte
	switch len(s) {
	case 36:
		for i, c := range []byte(s) {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if c != '-' {
					return "", false
				}
				continue
			}
			hex = append(hex, c)
		}
	case 32:
		hex = []byte(s)
	default:
		return "", false
	}
	var b strings.Builder
	b.Grow(36)
	for i, c := range hex {
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", false
		}
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b.WriteByte('-')
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// validName trims name as the template's validator does and reports
// whether what is left is acceptable.
func validName(name string) (string, bool) {
	name = strings.TrimSpace(name)
	return name, name != "" && len([]rune(name)) <= maxNameLength
}

// validEmail is a minimal stand-in for Pydantic's EmailStr.
func validEmail(email string) bool {
	local, domain, ok := strings.Cut(email, "@")
	return ok && local != "" && strings.Contains(domain, ".") && !strings.ContainsAny(email, " \t\r\n")
}
