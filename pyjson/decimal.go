package pyjson

import (
	"strconv"
	"strings"
)

// Decimal is a decimal number kept exactly as text: Pydantic's Decimal,
// which it writes as a JSON string in the form Python's str gives it:
// "1234.50" (trailing zeros kept), "12345678901234567890.01", "1E-7",
// "1E+3", "-0".
//
// Build one from text, Decimal("19.99"); read it with string(d), or do
// arithmetic on it with math/big (new(big.Rat).SetString(string(d))) or a
// decimal library. Never go through float64: it loses digits. Go's ==
// compares the text, so Decimal("1.5") != Decimal("1.50"), as their str
// differs in Python (though Python's == holds them equal).
//
// The text accepted, when encoding and decoding, is an optional "-", digits,
// optionally "." and digits, optionally "e" or "E", a sign and digits.
// NaN, Infinity (Pydantic refuses both by default), "+1", ".5", "5.",
// spaces, underscores, the empty Decimal and null (use *Decimal for an
// Optional field) are errors.
type Decimal string

// MarshalJSON writes d as Pydantic writes the same Decimal: a JSON string
// of Python's str(Decimal(d)), so Decimal("1e3") is written "1E+3" and
// Decimal("0.0000001") "1E-7".
func (d Decimal) MarshalJSON() ([]byte, error) {
	s, err := canonical(string(d))
	if err != nil {
		return nil, err
	}
	return quoted(s), nil
}

// UnmarshalJSON reads a JSON string holding a decimal and keeps it in the
// form Python's str would give it (what Pydantic writes is already in that
// form, so its text is kept as it is). A JSON number is an error: Pydantic
// never writes one for a Decimal.
func (d *Decimal) UnmarshalJSON(data []byte) error {
	s, err := text("Decimal", data)
	if err != nil {
		return err
	}
	c, err := canonical(s)
	if err != nil {
		return err
	}
	*d = Decimal(c)
	return nil
}

// maxExponent bounds the exponents accepted: Python's decimal (libmpdec on
// a 64-bit machine) refuses an adjusted exponent above it. Below -maxExponent
// Python still accepts some; refusing them keeps the arithmetic in int64.
const maxExponent = 999_999_999_999_999_999

// canonical returns s in the form Python's str(Decimal(s)) takes (the
// General Decimal Arithmetic to-scientific-string), or an error if s is not
// a finite decimal in the accepted syntax.
func canonical(s string) (string, error) {
	if s == "" {
		return "", syntaxError("Decimal", s, "empty; Pydantic needs a number")
	}
	neg, body := false, s
	if body[0] == '-' {
		neg, body = true, body[1:]
	}
	intPart, body := leadingDigits(body)
	if intPart == "" {
		switch strings.ToLower(strings.TrimLeft(body, "+-")) {
		case "nan", "snan", "inf", "infinity":
			return "", syntaxError("Decimal", s, "not finite; Pydantic refuses NaN and Infinity")
		}
		return "", syntaxError("Decimal", s, "want digits first, after an optional '-'")
	}
	var frac string
	if body != "" && body[0] == '.' {
		frac, body = leadingDigits(body[1:])
		if frac == "" {
			return "", syntaxError("Decimal", s, "want digits after '.'")
		}
	}
	var exp int64
	if body != "" && (body[0] == 'e' || body[0] == 'E') {
		var ok bool
		if exp, body, ok = exponent(body[1:]); !ok {
			return "", syntaxError("Decimal", s, "want a sign or digits after 'E', and at most 18 of them")
		}
	}
	if body != "" {
		return "", syntaxError("Decimal", s, "unexpected "+clip(body))
	}
	coef := strings.TrimLeft(intPart+frac, "0")
	if coef == "" {
		coef = "0"
	}
	exp -= int64(len(frac))
	adjusted := exp + int64(len(coef)-1)
	if adjusted > maxExponent || exp < -maxExponent {
		return "", syntaxError("Decimal", s, "exponent out of range")
	}
	return sciString(neg, coef, exp, adjusted), nil
}

// sciString formats sign, coefficient digits and exponent as Python's str
// does: plain notation while the exponent is not positive and the number
// not smaller than 1E-6 in magnitude, scientific otherwise.
func sciString(neg bool, coef string, exp, adjusted int64) string {
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case exp == 0:
		b.WriteString(coef)
	case exp < 0 && adjusted >= -6:
		point := len(coef) + int(exp) // digits before the point
		if point > 0 {
			b.WriteString(coef[:point])
			b.WriteByte('.')
			b.WriteString(coef[point:])
		} else {
			b.WriteString("0.")
			b.WriteString(strings.Repeat("0", -point))
			b.WriteString(coef)
		}
	default:
		b.WriteByte(coef[0])
		if len(coef) > 1 {
			b.WriteByte('.')
			b.WriteString(coef[1:])
		}
		b.WriteByte('E')
		if adjusted >= 0 {
			b.WriteByte('+')
		} else {
			b.WriteByte('-')
			adjusted = -adjusted
		}
		b.WriteString(strconv.FormatInt(adjusted, 10))
	}
	return b.String()
}

// leadingDigits splits s after its leading ASCII digits.
func leadingDigits(s string) (ds, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// exponent reads an optionally signed exponent of at most 18 significant
// digits at the start of s.
func exponent(s string) (int64, string, bool) {
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg, s = s[0] == '-', s[1:]
	}
	ds, rest := leadingDigits(s)
	if ds == "" {
		return 0, rest, false
	}
	ds = strings.TrimLeft(ds, "0")
	if len(ds) > 18 {
		return 0, rest, false
	}
	var e int64
	for i := 0; i < len(ds); i++ {
		e = e*10 + int64(ds[i]-'0')
	}
	if neg {
		e = -e
	}
	return e, rest, true
}
