package envelope_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tieredcache/tieredcache/internal/envelope"
)

// user is a user-like record, shaped as a Pydantic service returns one.
type user struct {
	ID          int64     `json:"id"`
	TenantID    string    `json:"tenant_id"`
	Email       string    `json:"email"`
	FirstName   string    `json:"first_name"`
	LastName    string    `json:"last_name"`
	CreatedAt   string    `json:"created_at"`
	LastLogin   *string   `json:"last_login"`
	IsActive    bool      `json:"is_active"`
	Roles       []string  `json:"roles"`
	Plan        string    `json:"plan"`
	Balance     string    `json:"balance"`
	Address     address   `json:"address"`
	Preferences prefs     `json:"preferences"`
	Scores      []float64 `json:"scores"`
}

type address struct {
	Street     string `json:"street"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

type prefs struct {
	Locale     string `json:"locale"`
	Timezone   string `json:"timezone"`
	Newsletter bool   `json:"newsletter"`
}

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie", "Margaret", "Dennis"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lamport", "Hamilton", "Ritchie"}
	cities     = []string{"Lisbon", "Berlin", "Toronto", "Osaka", "Nairobi", "Lima", "Oslo", "Austin"}
	countries  = []string{"PT", "DE", "CA", "JP", "KE", "PE", "NO", "US"}
	roles      = []string{"admin", "editor", "viewer", "billing", "support"}
	plans      = []string{"free", "team", "business", "enterprise"}
	zones      = []string{"Europe/Lisbon", "Europe/Berlin", "America/Toronto", "Asia/Tokyo", "Africa/Nairobi"}
)

// usersJSON returns a JSON list of user-like objects of at least size
// bytes, the same on every call.
func usersJSON(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	buf := []byte{'['}
	for i := 0; len(buf) < size; i++ {
		if i > 0 {
			buf = append(buf, ',')
		}
		first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
		city := r.IntN(len(cities))
		u := user{
			ID:        int64(100000 + i),
			TenantID:  fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()),
			Email:     fmt.Sprintf("%s.%s%d@example.com", first, last, r.IntN(1000)),
			FirstName: first,
			LastName:  last,
			CreatedAt: base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))).Format("2006-01-02T15:04:05.000000"),
			IsActive:  r.IntN(10) != 0,
			Roles:     []string{roles[r.IntN(len(roles))]},
			Plan:      plans[r.IntN(len(plans))],
			Balance:   fmt.Sprintf("%d.%02d", r.IntN(100000), r.IntN(100)),
			Address: address{
				Street:     fmt.Sprintf("%d %s Street", 1+r.IntN(999), lastNames[r.IntN(len(lastNames))]),
				City:       cities[city],
				PostalCode: fmt.Sprintf("%05d", r.IntN(100000)),
				Country:    countries[city],
			},
			Preferences: prefs{Locale: "en-" + countries[city], Timezone: zones[r.IntN(len(zones))], Newsletter: r.IntN(2) == 0},
			Scores:      []float64{float64(r.IntN(10000)) / 100, float64(r.IntN(10000)) / 100},
		}
		if r.IntN(4) != 0 {
			login := base.Add(time.Duration(r.Int64N(int64(400 * 24 * time.Hour)))).Format("2006-01-02T15:04:05.000000")
			u.LastLogin = &login
		}
		b, err := json.Marshal(u)
		if err != nil {
			panic(err)
		}
		buf = append(buf, b...)
	}
	return append(buf, ']')
}

// testKey returns a fixed AES-256 key derived from name.
func testKey(name string) []byte {
	k := sha256.Sum256([]byte("envelope test key " + name))
	return k[:]
}

// mode is a named configuration.
type mode struct {
	name string
	cfg  envelope.Config
}

// modes returns every combination of compression and encryption.
func modes() []mode {
	ring := map[string][]byte{"k1": testKey("k1")}
	return []mode{
		{"plain", envelope.Config{}},
		{"s2", envelope.Config{Compression: "s2"}},
		{"zstd", envelope.Config{Compression: "zstd"}},
		{"aes-gcm", envelope.Config{KeyID: "k1", Keys: ring}},
		{"s2+aes-gcm", envelope.Config{Compression: "s2", KeyID: "k1", Keys: ring}},
		{"zstd+aes-gcm", envelope.Config{Compression: "zstd", KeyID: "k1", Keys: ring}},
	}
}
