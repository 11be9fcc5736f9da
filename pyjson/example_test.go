package pyjson_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tieredcache/tieredcache/pyjson"
)

// A Go mirror of a Pydantic model reads what model_dump_json wrote, and
// writes what model_validate_json reads.
func Example() {
	// class Invoice(BaseModel):
	//     id: UUID
	//     issued_at: datetime    # naive, UTC by the service's convention
	//     due: date
	//     total: Decimal
	//     paid_at: datetime | None
	type invoice struct {
		ID       string            `json:"id"`
		IssuedAt pyjson.NaiveTime  `json:"issued_at"`
		Due      pyjson.Date       `json:"due"`
		Total    pyjson.Decimal    `json:"total"`
		PaidAt   *pyjson.NaiveTime `json:"paid_at"`
	}
	fromPython := `{"id":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","issued_at":"2024-01-02T03:04:05.120000",` +
		`"due":"2024-02-01","total":"1234.50","paid_at":null}`

	var inv invoice
	if err := json.Unmarshal([]byte(fromPython), &inv); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(inv.IssuedAt.In(time.UTC), inv.Due.Month, inv.Total, inv.PaidAt == nil)

	inv.Total = "1e3"
	paid := pyjson.Naive(time.Date(2024, 1, 5, 10, 0, 0, 0, time.UTC))
	inv.PaidAt = &paid
	out, _ := json.Marshal(inv)
	fmt.Println(string(out))
	// Output:
	// 2024-01-02 03:04:05.12 +0000 UTC February 1234.50 true
	// {"id":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","issued_at":"2024-01-02T03:04:05.120000","due":"2024-02-01","total":"1E+3","paid_at":"2024-01-05T10:00:00"}
}

// A naive datetime names a wall clock, not an instant: read it in the zone
// the Python service agreed on.
func ExampleNaiveTime_In() {
	var n pyjson.NaiveTime
	if err := json.Unmarshal([]byte(`"2024-07-01T09:30:00"`), &n); err != nil {
		fmt.Println(err)
		return
	}
	paris := time.FixedZone("CEST", 2*3600)
	fmt.Println(n.In(time.UTC))
	fmt.Println(n.In(paris).UTC())

	err := json.Unmarshal([]byte(`"2024-07-01T09:30:00Z"`), &n)
	fmt.Println(err)
	// Output:
	// 2024-07-01 09:30:00 +0000 UTC
	// 2024-07-01 07:30:00 +0000 UTC
	// pyjson: NaiveTime "2024-07-01T09:30:00Z": has a zone; an aware datetime decodes into time.Time
}
