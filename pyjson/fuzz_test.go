package pyjson_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/pyjson"
)

// roundTrip checks, for a value v decoded from some input, that it encodes,
// that the encoding decodes to the same value, and that encoding is then a
// fixed point.
func roundTrip[T comparable, P interface {
	*T
	json.Unmarshaler
}](t *testing.T, v T) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%v decoded but does not encode: %v", v, err)
	}
	var again T
	if err := P(&again).UnmarshalJSON(out); err != nil {
		t.Fatalf("%s, as encoded, does not decode: %v", out, err)
	}
	if again != v {
		t.Fatalf("%s decodes to %v, not %v", out, again, v)
	}
	out2, err := json.Marshal(again)
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("encodes as %s, then as %s (%v)", out, out2, err)
	}
	return out
}

func FuzzNaiveTime(f *testing.F) {
	for _, s := range []string{
		`"2024-01-02T03:04:05"`, `"2024-01-02T03:04:05.123456"`, `"2024-01-02T03:04:05.5"`,
		`"0001-01-01T00:00:00"`, `"9999-12-31T23:59:59.999999"`, `"2024-02-29T00:00:00.000000"`,
		`"2024-01-02T03:04:05Z"`, `"2024-01-02T03:04:05.1234567"`, `"2024-01-02"`, `null`, `""`, `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var n pyjson.NaiveTime
		if err := n.UnmarshalJSON(in); err != nil {
			return
		}
		roundTrip(t, n)
		if pyjson.Naive(n.In(time.UTC)) != n {
			t.Fatalf("%s: Naive(In(UTC)) changes the wall clock", in)
		}
	})
}

func FuzzDate(f *testing.F) {
	for _, s := range []string{
		`"2024-01-02"`, `"2000-02-29"`, `"0001-01-01"`, `"9999-12-31"`, `"2023-02-29"`,
		`"2024-01-02T00:00:00"`, `null`, `""`, `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var d pyjson.Date
		if err := d.UnmarshalJSON(in); err != nil {
			return
		}
		if out := roundTrip(t, d); !bytes.Equal(out, in) {
			t.Fatalf("%s encodes as %s: Date has one form", in, out)
		}
	})
}

func FuzzDecimal(f *testing.F) {
	for _, s := range []string{
		`"0"`, `"-0.00"`, `"1234.50"`, `"1E+3"`, `"1e3"`, `"0.0000001"`, `"12.30e-1"`,
		`"00012.3"`, `"1E+999999999999999999"`, `"1E-999999999999999999"`, `"NaN"`,
		`"+1"`, `".5"`, `"1e"`, `null`, `""`, `1.5`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var d pyjson.Decimal
		if err := d.UnmarshalJSON(in); err != nil {
			return
		}
		out := roundTrip(t, d)
		if !bytes.Equal(out, []byte(`"`+string(d)+`"`)) {
			t.Fatalf("%s decodes to %q but encodes as %s", in, d, out)
		}
	})
}
