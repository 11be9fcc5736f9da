package pyjson

import "fmt"

// text returns the contents of the JSON string data, for the type named
// kind. It refuses null (an Optional field needs a pointer) and anything
// but a plain string: every form Pydantic writes for these types is ASCII
// without escapes.
func text(kind string, data []byte) (string, error) {
	if string(data) == "null" {
		return "", fmt.Errorf("pyjson: null for a %s; an Optional field needs *pyjson.%s", kind, kind)
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return "", fmt.Errorf("pyjson: %s: want a JSON string, got %s", kind, clip(string(data)))
	}
	return string(data[1 : len(data)-1]), nil
}

// quoted returns s as a JSON string; s is ASCII that needs no escaping.
func quoted(s string) []byte {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// syntaxError describes why s is not a valid kind.
func syntaxError(kind, s, why string) error {
	return fmt.Errorf("pyjson: %s %s: %s", kind, clip(s), why)
}

// clip quotes s for an error message, shortened if long.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// digits parses s as an unsigned decimal made of ASCII digits only.
func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// appendPadded appends n in decimal, zero-padded to width digits.
func appendPadded(b []byte, n, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for n > 0 || i > len(buf)-width {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, buf[i:]...)
}
