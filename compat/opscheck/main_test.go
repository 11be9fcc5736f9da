package opscheck

import (
	"testing"

	"github.com/tieredcache/tieredcache/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }
