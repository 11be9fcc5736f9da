package bus

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Which connections tracking needs.
//
// Redis notifies a tracking client only of the keys of the node it is
// connected to, so the bus keeps one tracking link per master: one for a
// single node or a Sentinel failover client, one per master of a cluster.
// The app channel rides on exactly one of them (a classic PUBLISH on a
// cluster reaches every node, so one subscription suffices and two would
// deliver each message twice). Every PingInterval the bus compares the
// cluster's masters with its links; a master that appeared gets a link, a
// link whose master went away is dropped, and the change is reported as a
// gap once every link is confirmed, since keys may have moved meanwhile.
// A single node's link is checked against the server that the user's
// client talks to, and replaced when they differ (see followServer).

// runTracking keeps one tracking link per master until the bus is closed or
// its first connection finds tracking refused.
func (b *Bus) runTracking() {
	links := make(map[string]*link)
	defer func() { b.stopLinks(slices.Collect(maps.Values(links))...) }()
	tick := time.NewTicker(b.cfg.PingInterval)
	defer tick.Stop()
	for {
		b.syncMasters(links)
		b.followServer(links)
		select {
		case <-b.ctx.Done():
			return
		case <-b.fallback:
			return
		case <-tick.C:
		}
	}
}

// syncMasters brings links, by master address, in line with the masters
// of the moment. New links start before old ones are dropped, so a change
// is reported as one gap, once the new links are confirmed.
func (b *Bus) syncMasters(links map[string]*link) {
	want, err := b.masters()
	if err != nil {
		if len(links) == 0 {
			b.mu.Lock()
			b.down(err)
			b.mu.Unlock()
		}
		return
	}
	var gone []*link
	carrier := false
	for addr, l := range links {
		if _, ok := want[addr]; !ok {
			gone = append(gone, l)
			delete(links, addr)
		} else if slices.Contains(l.channels, b.cfg.Channel) {
			carrier = true
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(want)) {
		old, ok := links[addr]
		if ok && carrier {
			continue
		}
		if ok {
			gone = append(gone, old) // replaced by one that carries the app channel
		}
		links[addr] = b.addTrackingLink(want[addr], !carrier)
		carrier = true
	}
	for _, l := range gone {
		b.dropLink(l)
	}
}

// dropLink stops l because the topology no longer needs it, which is a
// gap, and reports Up if every remaining connection is confirmed.
func (b *Bus) dropLink(l *link) {
	b.mu.Lock()
	delete(b.links, l)
	l.removed = true
	if b.everUp {
		b.gap = true
	}
	b.settle()
	b.mu.Unlock()
	l.stop()
}

// addTrackingLink starts a tracking link to the node opt reaches, carrying
// the app channel too when app is set.
func (b *Bus) addTrackingLink(opt *redis.Options, app bool) *link {
	channels := []string{trackingChannel}
	if app {
		channels = append(channels, b.cfg.Channel)
	}
	l := b.newLink(nil, true, nil, channels...)
	_, l.follow = b.rdb.(*redis.Client)
	l.client = b.trackingClient(opt, l)
	l.open = l.client.Subscribe
	b.startLink(l)
	return l
}

// followServer replaces the link of a single-node bus when the user's
// client is served by another server than the link: after a Sentinel
// failover, whose old master keeps its clients (Sentinel kills only normal
// ones) and stays a master until Sentinel reconfigures it, or behind a
// name that moved. Servers are told apart by run id; where INFO is denied
// the check is off. A replacement is a gap.
func (b *Bus) followServer(links map[string]*link) {
	rdb, ok := b.rdb.(*redis.Client)
	if !ok {
		return
	}
	for addr, l := range links {
		mine, _ := l.server.Load().(string)
		if mine == "" {
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.PingInterval)
		info, err := rdb.Info(ctx, "server").Result()
		cancel()
		if theirs := RunID(info); err != nil || theirs == "" || theirs == mine {
			return
		}
		links[addr] = b.addTrackingLink(rdb.Options(), true)
		b.dropLink(l)
	}
}

// masters returns the client options of every master, by address.
func (b *Bus) masters() (map[string]*redis.Options, error) {
	switch rdb := b.rdb.(type) {
	case *redis.Client:
		o := rdb.Options()
		return map[string]*redis.Options{o.Addr: o}, nil
	case *redis.ClusterClient:
		return b.clusterMasters(rdb)
	}
	return nil, errors.New("remote: tracking needs a *redis.Client or *redis.ClusterClient")
}

// clusterMasters asks the cluster for its masters. ForEachMaster reloads the
// cluster state first, so a change shows at the next call.
func (b *Bus) clusterMasters(rdb *redis.ClusterClient) (map[string]*redis.Options, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.PingInterval)
	defer cancel()
	var mu sync.Mutex
	out := make(map[string]*redis.Options)
	err := rdb.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		o := c.Options()
		mu.Lock()
		out[o.Addr] = o
		mu.Unlock()
		return nil
	})
	if err == nil && len(out) == 0 {
		err = errors.New("remote: the cluster reports no master")
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
