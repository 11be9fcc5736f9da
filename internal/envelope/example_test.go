package envelope_test

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/tieredcache/tieredcache/internal/envelope"
)

func Example() {
	// Load keys from a secret store; a random one stands in here.
	key := make([]byte, envelope.KeySize)
	rand.Read(key)
	e, err := envelope.New(envelope.Config{
		Compression: "zstd",
		KeyID:       "2025-06",
		Keys:        map[string][]byte{"2025-06": key},
	})
	if err != nil {
		panic(err)
	}

	const redisKey = "app:tenant-acme:user:42:v1"
	value := bytes.Repeat([]byte(`{"id":42,"email":"ada@example.com"},`), 100)
	stored, _ := e.Seal(nil, redisKey, value)
	fmt.Println("enveloped:", envelope.IsEnveloped(stored), "smaller:", len(stored) < len(value))

	got, _ := e.Open(nil, redisKey, stored)
	fmt.Println("round trip:", bytes.Equal(got, value))

	_, err = e.Open(nil, "app:tenant-evil:user:42:v1", stored)
	fmt.Println("under another key:", err != nil)

	plain := []byte(`{"id":7}`) // written by the Python template
	got, _ = e.Open(nil, "app:tenant-acme:user:7:v1", plain)
	fmt.Println("plain JSON:", string(got))
	// Output:
	// enveloped: true smaller: true
	// round trip: true
	// under another key: true
	// plain JSON: {"id":7}
}
