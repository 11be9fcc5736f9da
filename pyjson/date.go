package pyjson

import (
	"fmt"
	"time"
)

// Date is a calendar date without a time or zone: Pydantic's date, written
// "2024-01-02". Python's dates run from year 1 to 9999; encoding a Date
// outside that range, or one that does not exist (February 30th, month 0),
// is an error, and so is encoding the zero Date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// MarshalJSON writes the date as Pydantic does: "YYYY-MM-DD".
func (d Date) MarshalJSON() ([]byte, error) {
	if err := checkDate(d.Year, int(d.Month), d.Day); err != "" {
		return nil, syntaxError("Date", d.format(), err)
	}
	return quoted(d.format()), nil
}

// UnmarshalJSON reads exactly the form Pydantic writes, "YYYY-MM-DD". A
// datetime, a timestamp, or null (use *Date for an Optional field) is an
// error.
func (d *Date) UnmarshalJSON(data []byte) error {
	s, err := text("Date", data)
	if err != nil {
		return err
	}
	if len(s) > 10 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') {
		return syntaxError("Date", s, "has a time of day; a datetime decodes into pyjson.NaiveTime or time.Time")
	}
	y, m, day, why := parseDate(s)
	if why != "" {
		return syntaxError("Date", s, why)
	}
	if len(s) != 10 {
		return syntaxError("Date", s, "want YYYY-MM-DD")
	}
	*d = Date{Year: y, Month: time.Month(m), Day: day}
	return nil
}

// format writes d as YYYY-MM-DD, whatever its fields hold.
func (d Date) format() string {
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day)
}

// parseDate reads "YYYY-MM-DD" at the start of s and checks that the date
// exists in Python's range. It returns why not, or "".
func parseDate(s string) (y, m, d int, why string) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, "want YYYY-MM-DD"
	}
	y, ok1 := digits(s[0:4])
	m, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, "want YYYY-MM-DD"
	}
	return y, m, d, checkDate(y, m, d)
}

// checkDate says why y-m-d is not a date Python holds, or "".
func checkDate(y, m, d int) string {
	switch {
	case y < 1 || y > 9999:
		return "year out of Python's range 1..9999"
	case m < 1 || m > 12:
		return "month out of range"
	case d < 1 || d > daysIn(y, m):
		return "day out of range for the month"
	}
	return ""
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
