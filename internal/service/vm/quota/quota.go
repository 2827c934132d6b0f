// Package quota holds each user's VMs to the host's per-user limits: how
// many VMs, and how many CPUs and how much memory the running ones take,
// counting those starting as running.
package quota

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Book counts what users' VMs take, from the store and the starts in
// flight.
type Book struct {
	Limits Limits
	Store  interface {
		ListVMs(ctx context.Context) ([]store.VM, error)
	}

	mu       sync.Mutex
	starting map[string]store.VM // guarded by mu: VMs starting, whose CPUs and memory are reserved
}

// Limits bound what one user's VMs take of the host, so that no member
// of the banger group can spend it all; 0 is no limit. Root's VMs, and
// what root does, are not bounded.
type Limits struct {
	// VMs counts every VM a user has, running or not (each holds disks).
	VMs int
	// CPUs and MemoryMB count the user's running VMs.
	CPUs     int
	MemoryMB int
}

// taken is what one user's VMs take.
type taken struct {
	vms, cpus, memoryMB int
	running             []string
}

// usageOf adds up owner's VMs: every one for the count; those running,
// starting, or about to start (reserved) for CPUs and memory.
func (b *Book) usageOf(ctx context.Context, owner uint32) (taken, error) {
	vs, err := b.Store.ListVMs(ctx)
	if err != nil {
		return taken{}, err
	}
	var u taken
	for _, v := range vs {
		if v.Owner != owner {
			continue
		}
		u.vms++
		if _, starting := b.starting[v.Name]; v.State != api.VMStopped && !starting {
			u.add(v)
		}
	}
	for _, v := range b.starting {
		if v.Owner == owner {
			u.add(v)
		}
	}
	return u, nil
}

func (u *taken) add(v store.VM) {
	u.cpus += v.CPUs
	u.memoryMB += v.MemoryMB
	u.running = append(u.running, v.Name)
}

// bounded says whether owner's VMs are held to the quota when ctx's
// caller acts on them.
func bounded(ctx context.Context, owner uint32) bool {
	return owner != 0 && !peer.Root(ctx)
}

// CheckCount refuses owner one more VM past max_vms_per_user.
func (b *Book) CheckCount(ctx context.Context, owner uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checkCount(ctx, owner)
}

// Insert counts owner's VMs and inserts one more with insert, at once:
// two creates cannot both take a user's last place.
func (b *Book) Insert(ctx context.Context, owner uint32, insert func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkCount(ctx, owner); err != nil {
		return err
	}
	return insert()
}

func (b *Book) checkCount(ctx context.Context, owner uint32) error {
	q := b.Limits
	if q.VMs == 0 || !bounded(ctx, owner) {
		return nil
	}
	u, err := b.usageOf(ctx, owner)
	if err != nil {
		return err
	}
	if u.vms+1 > q.VMs {
		return fmt.Errorf("you have %d VMs, and max_vms_per_user is %d: remove one (`banger vm ls`, `banger vm rm NAME`) or ask the host's admin to raise the limit: %w", u.vms, q.VMs, errdefs.ErrQuota)
	}
	return nil
}

// Reserve holds v's CPUs and memory against its owner's quota while it
// starts; release gives them back (a started VM counts as running from
// then on). Starts of one user cannot together pass the limit.
func (b *Book) Reserve(ctx context.Context, v store.VM) (release func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.Limits; (q.CPUs > 0 || q.MemoryMB > 0) && bounded(ctx, v.Owner) {
		u, err := b.usageOf(ctx, v.Owner)
		if err != nil {
			return nil, err
		}
		if q.CPUs > 0 && u.cpus+v.CPUs > q.CPUs {
			return nil, fmt.Errorf("vm %s needs %d CPUs, and your running VMs (%s) use %d of max_cpus_per_user = %d: stop one, or give this one fewer: %w", v.Name, v.CPUs, list(u.running), u.cpus, q.CPUs, errdefs.ErrQuota)
		}
		if q.MemoryMB > 0 && u.memoryMB+v.MemoryMB > q.MemoryMB {
			return nil, fmt.Errorf("vm %s needs %d MiB of memory, and your running VMs (%s) use %d MiB of max_memory_per_user = %d MiB: stop one, or give this one less: %w", v.Name, v.MemoryMB, list(u.running), u.memoryMB, q.MemoryMB, errdefs.ErrQuota)
		}
	}
	if b.starting == nil {
		b.starting = map[string]store.VM{}
	}
	b.starting[v.Name] = v
	return func() {
		b.mu.Lock()
		delete(b.starting, v.Name)
		b.mu.Unlock()
	}, nil
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
