package keys

import (
	"context"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Global is the tenant of keys that belong to no tenant (health checks,
// system data). It is allowed even when isolation is enforced, but only
// when asked for explicitly with Tenant(Global) or WithTenant(ctx, Global).
const Global = "global"

// maxPartLen is the longest accepted key part, in bytes.
const maxPartLen = 256

const defaultVersion = "v1"

var (
	// ErrTenantRequired is returned by Build when tenant isolation is
	// enforced and neither a Tenant part nor the context names a tenant.
	ErrTenantRequired = errors.New("keys: tenant required: tenant isolation is enforced and no tenant was given")

	// ErrInvalidKey is returned when a key part is empty, too long, or
	// contains a separator, whitespace, a control character or a brace.
	ErrInvalidKey = errors.New("keys: invalid key part")
)

// Builder builds keys under one prefix. It is immutable and safe for
// concurrent use.
type Builder struct {
	prefix  string
	version string
	enforce bool
}

// Option configures a Builder.
type Option func(*Builder)

// EnforceTenantIsolation makes Build fail with ErrTenantRequired when no
// tenant is given, instead of using the global tenant.
func EnforceTenantIsolation() Option {
	return func(b *Builder) { b.enforce = true }
}

// New returns a Builder for keys under prefix, e.g. "fastapi_template".
func New(prefix string, opts ...Option) (*Builder, error) {
	b := &Builder{prefix: prefix, version: defaultVersion}
	for _, o := range opts {
		o(b)
	}
	if err := validate("prefix", prefix); err != nil {
		return nil, err
	}
	return b, nil
}

// Prefix returns the builder's prefix.
func (b *Builder) Prefix() string { return b.prefix }

// Part is an optional component of one key: its tenant, version or suffix.
// Parts are plain values, so passing them costs no allocation.
type Part struct {
	kind partKind
	val  string
}

type partKind uint8

const (
	partNone partKind = iota
	partTenant
	partVersion
	partSuffix
)

// Tenant sets the key's tenant, overriding the one in the context.
func Tenant(id string) Part { return Part{partTenant, id} }

// Version sets the key's version, overriding the builder's default.
func Version(v string) Part { return Part{partVersion, v} }

// Suffix appends a variation suffix, e.g. "with_memberships". An empty
// suffix means no suffix, as in the Python template.
func Suffix(s string) Part { return Part{partSuffix, s} }

// Build returns the key for resource and id.
func (b *Builder) Build(ctx context.Context, resource, id string, parts ...Part) (string, error) {
	if err := validate("resource", resource); err != nil {
		return "", err
	}
	var buf [192]byte
	k, err := b.resource(resource).Append(buf[:0], ctx, id, parts...)
	if err != nil {
		return "", err
	}
	return string(k), nil
}

// Resource is a Builder bound to one validated resource type: it builds
// that resource's keys without validating the resource name again, from
// pieces joined once.
type Resource struct {
	b       *Builder
	name    string
	head    string // "{prefix}:tenant-"
	mid     string // ":{resource}:"
	global  string // "{prefix}:tenant-global:{resource}:"
	version string // default version
	tail    string // ":{version}"
}

// Resource returns the keys of one resource type, e.g. "user".
func (b *Builder) Resource(name string) (*Resource, error) {
	if err := validate("resource", name); err != nil {
		return nil, err
	}
	return b.resource(name), nil
}

func (b *Builder) resource(name string) *Resource {
	head, mid := b.prefix+":tenant-", ":"+name+":"
	return &Resource{
		b: b, name: name, head: head, mid: mid, global: head + Global + mid,
		version: b.version, tail: ":" + b.version,
	}
}

// WithVersion returns a copy of r with v as its default version.
func (r *Resource) WithVersion(v string) (*Resource, error) {
	if err := validate("version", v); err != nil {
		return nil, err
	}
	c := *r
	c.version, c.tail = v, ":"+v
	return &c, nil
}

// Append appends the key for id to dst and returns the extended slice. With
// a dst of enough capacity it does not allocate, which is what lets a cache
// look a key up without building a string.
func (r *Resource) Append(dst []byte, ctx context.Context, id string, parts ...Part) ([]byte, error) {
	if len(parts) > 0 {
		return r.appendParts(dst, ctx, id, parts)
	}
	// The common case, inline: the tenant comes from ctx (checked when
	// WithTenant stored it) or is the global one, the version is the
	// default, and only id needs a check.
	t, hasTenant := tenantOf(ctx)
	switch {
	case !hasTenant && r.b.enforce:
		return dst, ErrTenantRequired
	case hasTenant && !t.valid:
		return dst, validate("tenant", t.id)
	}
	if !plain(id) {
		if err := check("id", id); err != nil {
			return dst, err
		}
	}
	if hasTenant {
		dst = append(dst, r.head...)
		dst = append(dst, t.id...)
		dst = append(dst, r.mid...)
	} else {
		dst = append(dst, r.global...)
	}
	dst = append(dst, id...)
	return append(dst, r.tail...), nil
}

// appendParts is Append with parts.
func (r *Resource) appendParts(dst []byte, ctx context.Context, id string, parts []Part) ([]byte, error) {
	tenant, version, suffix, err := r.b.resolve(ctx, parts)
	if err != nil {
		return dst, err
	}
	if err := validate("id", id); err != nil {
		return dst, err
	}
	dst = append(dst, r.head...)
	dst = append(dst, tenant...)
	dst = append(dst, r.mid...)
	dst = append(dst, id...)
	if version == "" {
		dst = append(dst, r.tail...)
	} else {
		dst = append(dst, ':')
		dst = append(dst, version...)
	}
	if suffix != "" {
		dst = append(dst, ':')
		dst = append(dst, suffix...)
	}
	return dst, nil
}

// resolve returns the tenant, the version ("" for the default) and the
// suffix of a key.
func (b *Builder) resolve(ctx context.Context, parts []Part) (tenant, version, suffix string, err error) {
	hasTenant, hasVersion := false, false
	for _, p := range parts {
		switch p.kind {
		case partTenant:
			tenant, hasTenant = p.val, true
		case partVersion:
			version, hasVersion = p.val, true
		case partSuffix:
			suffix = p.val
		}
	}
	checked := false // a tenant from ctx was checked by WithTenant
	if !hasTenant {
		var t ctxTenant
		t, hasTenant = tenantOf(ctx)
		tenant, checked = t.id, t.valid
	}
	switch {
	case !hasTenant && b.enforce:
		return "", "", "", ErrTenantRequired
	case !hasTenant:
		tenant = Global
	case !checked:
		if err = validate("tenant", tenant); err != nil {
			return "", "", "", err
		}
	}
	// The default version was validated by New.
	if hasVersion {
		if err = validate("version", version); err != nil {
			return "", "", "", err
		}
	}
	if suffix != "" {
		if err = validate("suffix", suffix); err != nil {
			return "", "", "", err
		}
	}
	return tenant, version, suffix, nil
}

// rejected marks the bytes a part may not hold; bytes from 0x80 up are
// marked too, sending the part to the Unicode check.
var rejected = func() (t [256]bool) {
	for c := 0; c <= ' '; c++ {
		t[c] = true
	}
	for c := 0x7f; c < 256; c++ {
		t[c] = true
	}
	t[':'], t['{'], t['}'] = true, true, true
	return t
}()

// validate returns an error wrapping ErrInvalidKey if s may not be a key
// part; what names the part in the message.
func validate(what, s string) error {
	if plain(s) {
		return nil
	}
	return check(what, s)
}

// check is validate without the fast path for plain parts.
func check(what, s string) error {
	if s == "" {
		return &partError{what: what, val: s, why: "is empty"}
	}
	if len(s) > maxPartLen {
		return &partError{what: what, val: s[:32] + "...", why: fmt.Sprintf("is longer than %d bytes", maxPartLen)}
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; rejected[c] {
			if c >= utf8.RuneSelf {
				return validateUnicode(what, s)
			}
			return &partError{what: what, val: s, why: fmt.Sprintf("contains %q", c)}
		}
	}
	return nil
}

// plain reports whether s, of 8 to maxPartLen bytes, holds none of the
// bytes that rejected marks, reading it 8 bytes at a time; the last 8
// bytes are read even when they overlap the ones before. False for any
// other length, and whenever unsure: check then decides.
func plain(s string) bool {
	if len(s) < 8 || len(s) > maxPartLen {
		return false
	}
	var bad uint64
	for i := 0; i < len(s)-8; i += 8 {
		bad |= rejectedIn(load64(s, i))
	}
	return bad|rejectedIn(load64(s, len(s)-8)) == 0
}

// load64 returns the 8 bytes of s from i, the first in the low bits.
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// Byte-wise arithmetic on 8 bytes packed in a uint64: ones has 1 in every
// byte, highs the top bit of every byte.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// rejectedIn returns a non-zero value if any of the 8 bytes in x is one
// that rejected marks: up to ' ', from 0x7f, ':', '{' or '}'. Each term
// sets the top bit of the lowest byte it is about, so none misses a byte
// (a term may also flag bytes above the one it found, which only costs
// a look at the byte table).
func rejectedIn(x uint64) uint64 {
	bad := x | (x + ones)          // from 0x7f: 0x7f+1 reaches the top bit
	bad |= (x - (' '+1)*ones) &^ x // up to ' ': the subtraction borrows
	bad |= zeroIn(x^':'*ones) | zeroIn(x^'{'*ones) | zeroIn(x^'}'*ones)
	return bad & highs
}

// zeroIn sets the top bit of the lowest zero byte of y.
func zeroIn(y uint64) uint64 { return (y - ones) &^ y }

func validateUnicode(what, s string) error {
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			return &partError{what: what, val: s, why: "is not valid UTF-8"}
		case r == ':' || r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r):
			return &partError{what: what, val: s, why: fmt.Sprintf("contains %q", r)}
		case !unicode.IsPrint(r) && !unicode.IsGraphic(r):
			return &partError{what: what, val: s, why: fmt.Sprintf("contains %U", r)}
		}
	}
	return nil
}

type partError struct {
	what, val, why string
}

func (e *partError) Error() string {
	return fmt.Sprintf("keys: invalid key part: %s %q %s", e.what, e.val, e.why)
}

func (e *partError) Unwrap() error { return ErrInvalidKey }

type tenantKey struct{}

// ctxTenant is what WithTenant stores: the tenant, and whether it is a
// valid key part, checked once there rather than for every key built.
type ctxTenant struct {
	id    string
	valid bool
}

// WithTenant returns a copy of ctx that carries tenantID. Keys built with
// that context use it unless a call names a tenant with Tenant; building
// one fails with ErrInvalidKey if tenantID is not a valid key part.
func WithTenant(ctx context.Context, tenantID string) context.Context {
	t := ctxTenant{id: tenantID, valid: validate("tenant", tenantID) == nil}
	return context.WithValue(ctx, tenantKey{}, t)
}

// TenantFrom returns the tenant carried by ctx, if any.
func TenantFrom(ctx context.Context) (string, bool) {
	t, ok := tenantOf(ctx)
	return t.id, ok
}

// tenantOf returns what WithTenant stored in ctx, if anything; ctx may be
// nil.
func tenantOf(ctx context.Context) (ctxTenant, bool) {
	if ctx == nil {
		return ctxTenant{}, false
	}
	t, ok := ctx.Value(tenantKey{}).(ctxTenant)
	return t, ok
}
