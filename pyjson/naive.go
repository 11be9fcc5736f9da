package pyjson

import "time"

// NaiveTime is a date and wall-clock time without a zone: Pydantic's naive
// datetime, written "2024-01-02T03:04:05" or, when the microseconds are not
// zero, "2024-01-02T03:04:05.123456". Go's time.Time refuses both forms.
//
// A NaiveTime does not say which instant it names; In reads it in a zone,
// which must be the one the Python service and its database agreed on.
// It holds whole microseconds, as Python's datetime does. The zero NaiveTime
// is Python's datetime.min, 0001-01-01T00:00:00. Two NaiveTimes are equal
// with == when they show the same wall clock.
type NaiveTime struct {
	wall time.Time // the wall clock as fields of a UTC time, whole microseconds
}

// Naive returns the wall clock t shows in its own location, without the
// zone, truncated to the microsecond.
func Naive(t time.Time) NaiveTime {
	return NaiveTime{time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(),
		t.Nanosecond()/1000*1000, time.UTC)}
}

// In returns the instant at which the wall clock in loc shows n. Like
// time.Date, it panics if loc is nil, and a wall clock that a
// daylight-saving change skips or repeats in loc gives one of the instants
// time.Date documents.
func (n NaiveTime) In(loc *time.Location) time.Time {
	w := n.wall
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
}

// MarshalJSON writes n as Pydantic does: "YYYY-MM-DDTHH:MM:SS", followed by
// six digits of microseconds when they are not zero. A year outside
// Python's range 1..9999 is an error.
func (n NaiveTime) MarshalJSON() ([]byte, error) {
	w := n.wall
	if y := w.Year(); y < 1 || y > 9999 {
		return nil, syntaxError("NaiveTime", w.Format("2006-01-02T15:04:05.999999"), "year out of Python's range 1..9999")
	}
	b := make([]byte, 0, 28)
	b = append(b, '"')
	b = w.AppendFormat(b, "2006-01-02T15:04:05")
	if us := w.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = appendPadded(b, us, 6)
	}
	return append(b, '"'), nil
}

// UnmarshalJSON reads "YYYY-MM-DDTHH:MM:SS" with an optional fraction of
// one to six digits. Anything with a zone ("Z", "+02:00") is an error, and
// so are a date alone, a space or lower-case "t" between date and time,
// more than six fractional digits, a leap second, and null (use *NaiveTime
// for an Optional field).
func (n *NaiveTime) UnmarshalJSON(data []byte) error {
	s, err := text("NaiveTime", data)
	if err != nil {
		return err
	}
	t, why := parseNaive(s)
	if why != "" {
		return syntaxError("NaiveTime", s, why)
	}
	n.wall = t
	return nil
}

// parseNaive reads s as a naive datetime, or says why it is not one.
func parseNaive(s string) (time.Time, string) {
	const want = "want YYYY-MM-DDTHH:MM:SS[.ffffff]"
	y, mo, d, why := parseDate(s)
	if why != "" {
		return time.Time{}, why
	}
	switch {
	case len(s) == 10:
		return time.Time{}, "a date without a time; a date decodes into pyjson.Date"
	case s[10] != 'T':
		return time.Time{}, "want 'T' between the date and the time"
	case len(s) < 19 || s[13] != ':' || s[16] != ':':
		return time.Time{}, want
	}
	h, ok1 := digits(s[11:13])
	mi, ok2 := digits(s[14:16])
	sec, ok3 := digits(s[17:19])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, want
	}
	if h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, "time of day out of range"
	}
	rest, us := s[19:], 0
	if rest != "" && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		frac := rest[1:i]
		switch {
		case frac == "":
			return time.Time{}, "want digits after '.'"
		case len(frac) > 6:
			return time.Time{}, "more than 6 fractional digits; Python's datetime holds microseconds"
		}
		us, _ = digits(frac + "000000"[len(frac):])
		rest = rest[i:]
	}
	switch {
	case rest == "":
	case rest[0] == 'Z' || rest[0] == 'z' || rest[0] == '+' || rest[0] == '-':
		return time.Time{}, "has a zone; an aware datetime decodes into time.Time"
	default:
		return time.Time{}, want
	}
	return time.Date(y, time.Month(mo), d, h, mi, sec, us*1000, time.UTC), ""
}
