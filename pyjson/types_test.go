package pyjson_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/pyjson"
)

func TestNaiveTimeDecode(t *testing.T) {
	tests := []struct {
		in   string
		want pyjson.NaiveTime
		out  string // what encoding writes back; in, if empty
	}{
		{in: `"2024-01-02T03:04:05"`, want: naive(2024, 1, 2, 3, 4, 5, 0)},
		{in: `"2024-01-02T03:04:05.123456"`, want: naive(2024, 1, 2, 3, 4, 5, 123456)},
		{in: `"2024-01-02T03:04:05.120000"`, want: naive(2024, 1, 2, 3, 4, 5, 120000)},
		{in: `"2024-01-02T03:04:05.000001"`, want: naive(2024, 1, 2, 3, 4, 5, 1)},
		{in: `"2024-01-02T03:04:05.000000"`, want: naive(2024, 1, 2, 3, 4, 5, 0), out: `"2024-01-02T03:04:05"`},
		{in: `"2024-01-02T03:04:05.5"`, want: naive(2024, 1, 2, 3, 4, 5, 500000), out: `"2024-01-02T03:04:05.500000"`},
		{in: `"2000-02-29T23:59:59.999999"`, want: naive(2000, 2, 29, 23, 59, 59, 999999)},
		{in: `"0001-01-01T00:00:00"`, want: pyjson.NaiveTime{}},
		{in: `"9999-12-31T23:59:59.999999"`, want: naive(9999, 12, 31, 23, 59, 59, 999999)},
	}
	for _, tt := range tests {
		var got pyjson.NaiveTime
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.in, got.In(time.UTC), tt.want.In(time.UTC))
		}
		out, err := json.Marshal(got)
		want := tt.out
		if want == "" {
			want = tt.in
		}
		if err != nil || string(out) != want {
			t.Errorf("%s: encodes as %s (%v), want %s", tt.in, out, err, want)
		}
	}
}

func TestNaiveTimeRejects(t *testing.T) {
	tests := []struct{ in, why string }{
		{`null`, "null for a NaiveTime; an Optional field needs *pyjson.NaiveTime"},
		{`1704164645`, "want a JSON string"},
		{`"2024-01-02T03:04:05Z"`, "has a zone; an aware datetime decodes into time.Time"},
		{`"2024-01-02T03:04:05.123456+02:00"`, "has a zone"},
		{`"2024-01-02T03:04:05-03:30"`, "has a zone"},
		{`"2024-01-02"`, "a date without a time; a date decodes into pyjson.Date"},
		{`"2024-01-02 03:04:05"`, "want 'T' between the date and the time"},
		{`"2024-01-02t03:04:05"`, "want 'T'"},
		{`"2024-01-02T03:04"`, "want YYYY-MM-DDTHH:MM:SS[.ffffff]"},
		{`"2024-01-02T03:04:05."`, "want digits after '.'"},
		{`"2024-01-02T03:04:05.1234567"`, "more than 6 fractional digits"},
		{`"2024-01-02T23:59:60"`, "time of day out of range"},
		{`"2024-01-02T24:00:00"`, "time of day out of range"},
		{`"2023-02-29T00:00:00"`, "day out of range for the month"},
		{`"0000-01-01T00:00:00"`, "year out of Python's range 1..9999"},
		{`"+2024-01-02T03:04:05"`, "want YYYY-MM-DD"},
		{`"2024-1-2T03:04:05"`, "want YYYY-MM-DD"},
		{`"２０２４-01-02T03:04:05"`, "want YYYY-MM-DD"},
		{`"2024-01-02T03:04:05 "`, "want YYYY-MM-DDTHH:MM:SS"},
		{`""`, "want YYYY-MM-DD"},
	}
	for _, tt := range tests {
		var n pyjson.NaiveTime
		err := n.UnmarshalJSON([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.why) || !strings.HasPrefix(err.Error(), "pyjson: ") {
			t.Errorf("%s: got error %v, want one saying %q", tt.in, err, tt.why)
		}
	}
}

func TestNaiveAndIn(t *testing.T) {
	berlin := time.FixedZone("CEST", 2*3600)
	at := time.Date(2024, 7, 1, 9, 30, 0, 123456789, berlin)
	n := pyjson.Naive(at)
	if out, _ := json.Marshal(n); string(out) != `"2024-07-01T09:30:00.123456"` {
		t.Errorf("Naive keeps the wall clock of its location, truncated to the microsecond: got %s", out)
	}
	if got := n.In(berlin); !got.Equal(at.Truncate(time.Microsecond)) {
		t.Errorf("In(the same zone) = %v, want %v", got, at.Truncate(time.Microsecond))
	}
	if got, want := n.In(time.UTC), time.Date(2024, 7, 1, 9, 30, 0, 123456000, time.UTC); !got.Equal(want) {
		t.Errorf("In(UTC) = %v, want %v", got, want)
	}
	if pyjson.Naive(at) != pyjson.Naive(at.UTC().In(berlin)) {
		t.Error("the same wall clock gives NaiveTimes that are not ==")
	}
	if _, err := json.Marshal(pyjson.Naive(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))); err == nil ||
		!strings.Contains(err.Error(), "year out of Python's range") {
		t.Errorf("year 10000: got %v, want an error", err)
	}
}

func TestDate(t *testing.T) {
	for _, in := range []string{`"2024-01-02"`, `"2000-02-29"`, `"0001-01-01"`, `"9999-12-31"`} {
		var d pyjson.Date
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if out, err := json.Marshal(d); err != nil || string(out) != in {
			t.Errorf("%s: encodes as %s (%v)", in, out, err)
		}
	}
	var d pyjson.Date
	if err := json.Unmarshal([]byte(`"1815-12-10"`), &d); err != nil || d != (pyjson.Date{Year: 1815, Month: time.December, Day: 10}) {
		t.Errorf("got %+v, %v", d, err)
	}
	rejects := []struct{ in, why string }{
		{`null`, "null for a Date; an Optional field needs *pyjson.Date"},
		{`"2024-01-02T00:00:00"`, "has a time of day"},
		{`"2024-01-02 00:00"`, "has a time of day"},
		{`"2023-02-29"`, "day out of range"},
		{`"2024-13-01"`, "month out of range"},
		{`"0000-12-31"`, "year out of Python's range"},
		{`"2024-01-02Z"`, "want YYYY-MM-DD"},
		{`"20240102"`, "want YYYY-MM-DD"},
		{`19724`, "want a JSON string"},
	}
	for _, tt := range rejects {
		var d pyjson.Date
		if err := d.UnmarshalJSON([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%s: got error %v, want one saying %q", tt.in, err, tt.why)
		}
	}
	for _, d := range []pyjson.Date{{}, {Year: 2023, Month: 2, Day: 29}, {Year: 10000, Month: 1, Day: 1}, {Year: 2024, Month: 0, Day: 1}} {
		if out, err := json.Marshal(d); err == nil {
			t.Errorf("%+v encodes as %s, want an error", d, out)
		}
	}
}

func TestDecimal(t *testing.T) {
	tests := []struct{ in, out string }{
		{"0", "0"}, {"-0", "-0"}, {"0.00", "0.00"}, {"-0.00", "-0.00"},
		{"1234.50", "1234.50"}, {"12345678901234567890123456789.0100", "12345678901234567890123456789.0100"},
		{"1E+3", "1E+3"}, {"1e3", "1E+3"}, {"1.5e+06", "1.5E+6"}, {"1E-0", "1"},
		{"0.000001", "0.000001"}, {"0.0000001", "1E-7"}, {"0.00000123", "0.00000123"},
		{"-1.23E-10", "-1.23E-10"}, {"12.30e-1", "1.230"}, {"00012.3", "12.3"},
		{"0.0E+3", "0E+2"}, {"-0E+2", "-0E+2"}, {"0e0", "0"}, {"123.456E-2", "1.23456"},
		{"1E+999999999999999999", "1E+999999999999999999"},
		{"1E-999999999999999999", "1E-999999999999999999"},
	}
	for _, tt := range tests {
		var d pyjson.Decimal
		if err := json.Unmarshal([]byte(`"`+tt.in+`"`), &d); err != nil || string(d) != tt.out {
			t.Errorf("decode %q: got %q, %v; want %q", tt.in, d, err, tt.out)
		}
		if out, err := json.Marshal(pyjson.Decimal(tt.in)); err != nil || string(out) != `"`+tt.out+`"` {
			t.Errorf("encode %q: got %s, %v; want %q", tt.in, out, err, tt.out)
		}
	}
	rejects := []struct{ in, why string }{
		{`null`, "null for a Decimal; an Optional field needs *pyjson.Decimal"},
		{`1.5`, "want a JSON string"},
		{`""`, "empty"},
		{`"NaN"`, "not finite"},
		{`"-Infinity"`, "not finite"},
		{`"+1"`, "want digits first"},
		{`".5"`, "want digits first"},
		{`"5."`, "want digits after '.'"},
		{`" 1"`, "want digits first"},
		{`"1 "`, "unexpected"},
		{`"1_000"`, "unexpected"},
		{`"1e"`, "after 'E'"},
		{`"1e+"`, "after 'E'"},
		{`"1E+1000000000000000000"`, "after 'E'"},
		{`"123E+999999999999999998"`, "exponent out of range"},
		{`"1.5E-999999999999999999"`, "exponent out of range"},
		{`"0x10"`, "unexpected"},
		{`"1,5"`, "unexpected"},
	}
	for _, tt := range rejects {
		var d pyjson.Decimal
		if err := d.UnmarshalJSON([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%s: got error %v, want one saying %q", tt.in, err, tt.why)
		}
	}
	if out, err := json.Marshal(pyjson.Decimal("")); err == nil {
		t.Errorf("the empty Decimal encodes as %s, want an error", out)
	}
	if out, err := json.Marshal(struct{ D *pyjson.Decimal }{}); err != nil || string(out) != `{"D":null}` {
		t.Errorf("a nil *Decimal encodes as %s (%v), want null", out, err)
	}
}

// Inside a struct, null decodes into a pointer field as nil, and into a
// field of pyjson's types as an error, not as a zero value.
func TestNullNeedsAPointer(t *testing.T) {
	var v struct {
		T  pyjson.NaiveTime
		PT *pyjson.NaiveTime
		D  pyjson.Date
		PD *pyjson.Date
		N  pyjson.Decimal
		PN *pyjson.Decimal
	}
	if err := json.Unmarshal([]byte(`{"PT":null,"PD":null,"PN":null}`), &v); err != nil || v.PT != nil || v.PD != nil || v.PN != nil {
		t.Errorf("null into pointers: %v, %+v", err, v)
	}
	for _, doc := range []string{`{"T":null}`, `{"D":null}`, `{"N":null}`} {
		if err := json.Unmarshal([]byte(doc), &v); err == nil || !strings.Contains(err.Error(), "an Optional field needs *pyjson.") {
			t.Errorf("%s: got %v, want an error", doc, err)
		}
	}
}
