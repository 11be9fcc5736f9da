package keys_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tieredcache/tieredcache/keys"
)

func TestBuildLayout(t *testing.T) {
	b, err := keys.New("fastapi_template")
	if err != nil {
		t.Fatal(err)
	}
	enforced, err := keys.New("fastapi_template", keys.EnforceTenantIsolation())
	if err != nil {
		t.Fatal(err)
	}
	org123 := keys.WithTenant(context.Background(), "org-123")
	bg := context.Background()

	tests := []struct {
		name     string
		b        *keys.Builder
		ctx      context.Context
		resource string
		id       string
		parts    []keys.Part
		want     string
	}{
		{"basic", b, bg, "user", "uuid-456", nil, "fastapi_template:tenant-global:user:uuid-456:v1"},
		{"tenant from context", b, org123, "user", "uuid-456", nil, "fastapi_template:tenant-org-123:user:uuid-456:v1"},
		{"tenant from context, enforced", enforced, org123, "user", "uuid-456", nil, "fastapi_template:tenant-org-123:user:uuid-456:v1"},
		{"explicit tenant", b, bg, "organization", "uuid-012", []keys.Part{keys.Tenant("org-789")}, "fastapi_template:tenant-org-789:organization:uuid-012:v1"},
		{"explicit tenant overrides context", enforced, org123, "organization", "uuid-012", []keys.Part{keys.Tenant("org-789")}, "fastapi_template:tenant-org-789:organization:uuid-012:v1"},
		{"suffix", b, bg, "user", "uuid-456", []keys.Part{keys.Suffix("with_memberships")}, "fastapi_template:tenant-global:user:uuid-456:v1:with_memberships"},
		{"empty suffix is no suffix", b, bg, "user", "uuid-456", []keys.Part{keys.Suffix("")}, "fastapi_template:tenant-global:user:uuid-456:v1"},
		{"version", b, bg, "user", "uuid-456", []keys.Part{keys.Version("v2")}, "fastapi_template:tenant-global:user:uuid-456:v2"},
		{"explicit global, enforced", enforced, bg, "health", "status", []keys.Part{keys.Tenant(keys.Global)}, "fastapi_template:tenant-global:health:status:v1"},
		{"global in context, enforced", enforced, keys.WithTenant(bg, keys.Global), "health", "status", nil, "fastapi_template:tenant-global:health:status:v1"},
		{"all parts", b, org123, "user", "uuid-456", []keys.Part{keys.Version("v3"), keys.Suffix("with_orgs"), keys.Tenant("org-9")}, "fastapi_template:tenant-org-9:user:uuid-456:v3:with_orgs"},
		{"unicode id", b, bg, "user", "josé", nil, "fastapi_template:tenant-global:user:josé:v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.b.Build(tt.ctx, tt.resource, tt.id, tt.parts...)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Build = %q, want %q", got, tt.want)
			}
			r, err := tt.b.Resource(tt.resource)
			if err != nil {
				t.Fatal(err)
			}
			app, err := r.Append([]byte("x|"), tt.ctx, tt.id, tt.parts...)
			if err != nil || string(app) != "x|"+tt.want {
				t.Fatalf("Append = %q, %v; want %q", app, err, "x|"+tt.want)
			}
		})
	}
}

func TestResource(t *testing.T) {
	b, err := keys.New("fastapi_template")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resource("us:er"); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("Resource(us:er) = %v", err)
	}
	r, err := b.Resource("user")
	if err != nil {
		t.Fatalf("Resource(user) = %v, %v", r, err)
	}
	ctx := keys.WithTenant(context.Background(), "org-123")
	got, err := build(r, ctx, "uuid-456", keys.Suffix("with_memberships"))
	if err != nil || got != "fastapi_template:tenant-org-123:user:uuid-456:v1:with_memberships" {
		t.Fatalf("Build = %q, %v", got, err)
	}
	if _, err := build(r, ctx, "a b"); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("bad id: %v", err)
	}
}

func TestResourceVersion(t *testing.T) {
	b, err := keys.New("app")
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Resource("user")
	if err == nil {
		r, err = r.WithVersion("v7")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := build(r, context.Background(), "1")
	if err != nil || got != "app:tenant-global:user:1:v7" {
		t.Fatalf("Build = %q, %v", got, err)
	}
	got, err = build(r, context.Background(), "1", keys.Version("v8"))
	if err != nil || got != "app:tenant-global:user:1:v8" {
		t.Fatalf("Build = %q, %v", got, err)
	}
}

func TestTenantRequired(t *testing.T) {
	b, err := keys.New("app", keys.EnforceTenantIsolation())
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(context.Background(), "user", "1")
	if !errors.Is(err, keys.ErrTenantRequired) {
		t.Fatalf("Build without tenant = %v, want ErrTenantRequired", err)
	}
}

func TestInvalidParts(t *testing.T) {
	b, err := keys.New("app")
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	long := strings.Repeat("a", 257) // parts are at most 256 bytes
	tests := []struct {
		name     string
		ctx      context.Context
		resource string
		id       string
		parts    []keys.Part
	}{
		{"empty id", bg, "user", "", nil},
		{"empty resource", bg, "", "1", nil},
		{"colon in id", bg, "user", "1:2", nil},
		{"colon in resource", bg, "us:er", "1", nil},
		{"forged tenant in context", keys.WithTenant(bg, "org-1:user"), "user", "1", nil},
		{"forged tenant in context, with a suffix", keys.WithTenant(bg, "org-1:user"), "user", "1", []keys.Part{keys.Suffix("s")}},
		{"long forged tenant in context", keys.WithTenant(bg, "org-123456:user"), "user", "1", nil},
		{"forged tenant part", bg, "user", "1", []keys.Part{keys.Tenant("org-1:user")}},
		{"empty tenant part", bg, "user", "1", []keys.Part{keys.Tenant("")}},
		{"empty tenant in context", keys.WithTenant(bg, ""), "user", "1", nil},
		{"space", bg, "user", "a b", nil},
		{"tab", bg, "user", "a\tb", nil},
		{"newline", bg, "user", "a\nb", nil},
		{"nul", bg, "user", "a\x00b", nil},
		{"del", bg, "user", "a\x7fb", nil},
		{"unicode space", bg, "user", "a\u00a0b", nil},
		{"unicode line separator", bg, "user", "a\u2028b", nil},
		{"zero width joiner", bg, "user", "a\u200db", nil},
		{"invalid utf8", bg, "user", "a\xffb", nil},
		{"hash tag open", bg, "user", "a{b", nil},
		{"hash tag close", bg, "user", "a}b", nil},
		{"too long", bg, "user", long, nil},
		{"empty version", bg, "user", "1", []keys.Part{keys.Version("")}},
		{"colon in version", bg, "user", "1", []keys.Part{keys.Version("v1:x")}},
		{"colon in suffix", bg, "user", "1", []keys.Part{keys.Suffix("a:b")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := b.Build(tt.ctx, tt.resource, tt.id, tt.parts...)
			if !errors.Is(err, keys.ErrInvalidKey) {
				t.Fatalf("Build = %q, %v; want ErrInvalidKey", k, err)
			}
		})
	}
	if _, err := b.Build(bg, "user", strings.Repeat("a", 256)); err != nil {
		t.Fatalf("part of 256 bytes rejected: %v", err)
	}
	if _, err := b.Build(bg, "user", strings.Repeat("a", 257)); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("part of 257 bytes = %v, want ErrInvalidKey", err)
	}
}

// TestEveryByte puts each byte value at each position of ids of 1 to 24
// bytes, so that every byte of the 8-byte words that validation reads at
// once, the overlapping last one included, meets every value: an id is
// valid exactly when the byte is printable ASCII other than ':', '{' and
// '}' (a lone byte from 0x80 is not UTF-8).
func TestEveryByte(t *testing.T) {
	r := resource(t, "app", "user")
	for n := 1; n <= 24; n++ {
		id := []byte(strings.Repeat("a", n))
		for pos := range n {
			for c := range 256 {
				id[pos] = byte(c)
				want := c > ' ' && c < 0x7f && c != ':' && c != '{' && c != '}'
				_, err := r.Append(nil, context.Background(), string(id))
				if got := err == nil; got != want {
					t.Fatalf("id %q (byte %#x at %d of %d): accepted %v, want %v (%v)", id, c, pos, n, got, want, err)
				}
			}
			id[pos] = 'a'
		}
	}
}

// TestBadByteAmongOthers: a byte that is not allowed is found whatever
// its neighbours, including bytes that the 8-byte check treats specially
// (0x7e, 0x7f, 0x80, 0xff, multi-byte UTF-8).
func TestBadByteAmongOthers(t *testing.T) {
	r := resource(t, "app", "user")
	fills := []string{"~~~~~~~~~~~~~~~~", "!!!!!!!!!!!!!!!!", "ééééééééé", "zzzzzzzzzzzzzzzz", "9;9;9;9;9;9;9;9;"}
	for _, fill := range fills {
		if _, err := r.Append(nil, context.Background(), fill); err != nil {
			t.Fatalf("valid id %q rejected: %v", fill, err)
		}
		for _, bad := range []string{":", "{", "}", " ", "\x00", "\x7f", "\xff", "\x80", "\u00a0"} {
			for pos := 0; pos <= len(fill); pos++ {
				id := fill[:pos] + bad + fill[pos:]
				if _, err := r.Append(nil, context.Background(), id); !errors.Is(err, keys.ErrInvalidKey) {
					t.Fatalf("id %q accepted (%v)", id, err)
				}
			}
		}
	}
}

func resource(t *testing.T, prefix, name string) *keys.Resource {
	t.Helper()
	b, err := keys.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Resource(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewValidates(t *testing.T) {
	for _, prefix := range []string{"", "a:b", "a b", "{app}"} {
		if _, err := keys.New(prefix); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("New(%q) = %v, want ErrInvalidKey", prefix, err)
		}
	}
}

func TestTenantFrom(t *testing.T) {
	if _, ok := keys.TenantFrom(context.Background()); ok {
		t.Fatal("TenantFrom(Background) reported a tenant")
	}
	ctx := keys.WithTenant(context.Background(), "org-1")
	if got, ok := keys.TenantFrom(ctx); !ok || got != "org-1" {
		t.Fatalf("TenantFrom = %q, %v", got, ok)
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	kb, err := keys.New("fastapi_template")
	if err != nil {
		t.Fatal(err)
	}
	r, err := kb.Resource("user")
	if err != nil {
		t.Fatal(err)
	}
	ctx := keys.WithTenant(context.Background(), "org-123")
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = r.Append(buf[:0], ctx, "uuid-456", keys.Suffix("with_memberships"))
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkAppend(b *testing.B) {
	kb, err := keys.New("fastapi_template")
	if err != nil {
		b.Fatal(err)
	}
	r, err := kb.Resource("user")
	if err != nil {
		b.Fatal(err)
	}
	ctxs := []struct {
		name string
		ctx  context.Context
	}{
		{"tenant=context", keys.WithTenant(context.Background(), "org-123")},
		{"tenant=global", context.Background()},
	}
	for _, c := range ctxs {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 128)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = r.Append(buf[:0], c.ctx, "uuid-456")
			}
		})
	}
}

// FuzzBuild checks that no accepted input can produce a key whose segments
// read back differently: the tenant, resource and id of a built key are
// exactly the ones given.
func FuzzBuild(f *testing.F) {
	f.Add("org-1", "user", "uuid-456", "v1", "")
	f.Add("org-1:user", "x", "y", "v1", "s")
	f.Add("global", "user", "a\u00a0b", "v2", "with_orgs")
	b, err := keys.New("fz")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tenant, resource, id, version, suffix string) {
		ctx := keys.WithTenant(context.Background(), tenant)
		k, err := b.Build(ctx, resource, id, keys.Version(version), keys.Suffix(suffix))
		if err != nil {
			if !errors.Is(err, keys.ErrInvalidKey) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		segs := strings.Split(k, ":")
		want := 5
		if suffix != "" {
			want = 6
		}
		if len(segs) != want {
			t.Fatalf("key %q has %d segments, want %d", k, len(segs), want)
		}
		if segs[0] != "fz" || segs[1] != "tenant-"+tenant || segs[2] != resource || segs[3] != id || segs[4] != version {
			t.Fatalf("key %q does not read back as (%q, %q, %q, %q)", k, tenant, resource, id, version)
		}
		if strings.ContainsAny(k, "{} \t\r\n") {
			t.Fatalf("key %q contains a brace or whitespace", k)
		}
	})
}

func build(r *keys.Resource, ctx context.Context, id string, parts ...keys.Part) (string, error) {
	k, err := r.Append(nil, ctx, id, parts...)
	return string(k), err
}
