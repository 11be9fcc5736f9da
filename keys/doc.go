// Package keys builds cache keys in the layout shared with the Python
// FastAPI template this library interoperates with:
//
//	{prefix}:tenant-{tenant}:{resource}:{id}:{version}[:{suffix}]
//
// for example fastapi_template:tenant-global:user:uuid-456:v1.
//
// The tenant of a key comes, in order, from an explicit [Tenant] part, from
// the context ([WithTenant]), or is [Global]. A [Builder] made with
// [EnforceTenantIsolation] refuses to fall back to the global tenant: a key
// without a tenant is [ErrTenantRequired], so a request that lost its tenant
// cannot read or write another tenant's data.
//
// Every part is validated. A part that is empty, longer than 256 bytes
// bytes, not valid UTF-8, or that contains ':', whitespace, control
// characters or the Redis Cluster hash-tag braces '{' and '}' is
// [ErrInvalidKey]. The separator rule is what makes tenant isolation hold:
// a tenant id such as "org-1:user" could otherwise forge another tenant's key.
//
// The package has no dependencies outside the standard library.
package keys
