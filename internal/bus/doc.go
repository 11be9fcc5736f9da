// Package bus is the invalidation bus: it tells every process when a key
// under the prefix changed.
//
// It learns of changes from Redis itself where it can: server-assisted
// client tracking in broadcast mode, on one connection per master, reports
// every write under the key prefix by any client, every expiry, eviction and
// flush. It also carries the app channel, a documented JSON wire format
// (package wire, documented for users in package remote) that other
// services may publish on, and falls back to it alone where tracking is
// refused (Redis before 6, an ACL without CLIENT, miniredis). It confirms
// every connection before it reports ready, pings to detect a dead or hung
// one, and reports every gap, because invalidations sent while a connection
// is away are lost: its user must then assume that anything it cached may
// be stale.
package bus
