package accel

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Selector holds the daemon's choice: made once at start (from the cache
// when this host boot and this VMM were probed before), made again on
// request (banger doctor).
type Selector struct {
	Mode  Mode
	Host  Host
	Probe ProbeFunc
	// Cache is where the last probe's result is kept; "" keeps none.
	Cache string
	// VMMVersion identifies the VMM build, part of the cache key.
	VMMVersion func(ctx context.Context) (string, error)

	mu     sync.Mutex
	done   chan struct{}
	choice Choice
	err    error
}

// Start begins resolving the choice in the background; Get waits for it.
func (s *Selector) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	s.done = make(chan struct{})
	go func() {
		c, err := s.resolve(ctx, false)
		s.mu.Lock()
		s.choice, s.err = c, err
		close(s.done)
		s.mu.Unlock()
	}()
}

// Get returns the choice, waiting for the start-up probe if it runs.
func (s *Selector) Get(ctx context.Context) (Choice, error) {
	s.Start(context.WithoutCancel(ctx))
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return Choice{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.choice, s.err
}

// Current returns the choice without waiting; false while it is being made.
func (s *Selector) Current() (Choice, error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return Choice{}, nil, false
	}
	select {
	case <-s.done:
		return s.choice, s.err, true
	default:
		return Choice{}, nil, false
	}
}

// Reprobe proves KVM afresh, ignoring the cache, and makes the result the
// choice for VMs started from now on.
func (s *Selector) Reprobe(ctx context.Context) (Choice, error) {
	if _, err := s.Get(ctx); ctx.Err() != nil {
		return Choice{}, err
	}
	c, err := s.resolve(ctx, true)
	if ctx.Err() != nil {
		return c, ctx.Err()
	}
	s.mu.Lock()
	s.choice, s.err = c, err
	s.mu.Unlock()
	return c, err
}

type cached struct {
	Key    string `json:"key"`
	Choice Choice `json:"choice"`
}

func (s *Selector) resolve(ctx context.Context, fresh bool) (Choice, error) {
	if s.Mode == TCG {
		return Decide(ctx, s.Mode, s.Host, s.Probe)
	}
	key := s.key(ctx)
	if !fresh && key != "" && s.Cache != "" {
		var c cached
		if b, err := os.ReadFile(s.Cache); err == nil && json.Unmarshal(b, &c) == nil && c.Key == key {
			// The cache holds the verdict on KVM; the mode decides what
			// it means (auto: TCG, kvm: an error).
			d, err := Decide(ctx, s.Mode, s.Host, replay(c.Choice))
			d.Cached, d.ProbedAt, d.ProbeTook = true, c.Choice.ProbedAt, c.Choice.ProbeTook
			return d, err
		}
	}
	c, err := Decide(ctx, s.Mode, s.Host, s.Probe)
	if ctx.Err() != nil {
		return c, ctx.Err()
	}
	if key != "" && s.Cache != "" && len(c.Probes) > 0 {
		b, _ := json.MarshalIndent(cached{Key: key, Choice: c}, "", "  ")
		tmp := s.Cache + ".tmp"
		if os.MkdirAll(filepath.Dir(s.Cache), 0o700) == nil && os.WriteFile(tmp, b, 0o600) == nil {
			os.Rename(tmp, s.Cache)
		}
	}
	return c, err
}

// replay answers probes from a cached result, so that a cached verdict
// goes through the same decision as a fresh one.
func replay(c Choice) ProbeFunc {
	return func(_ context.Context, cpu string) Outcome {
		for _, r := range c.Probes {
			if r.CPU == cpu {
				return Outcome{OK: r.OK, Reason: r.Reason, RefusedMSR: refusedIn(r.Reason)}
			}
		}
		return Outcome{Reason: "not probed"}
	}
}

// refusedIn finds "MSR 0x..." in a reason, as the qemu probe writes it
// when qemu aborts on an MSR.
func refusedIn(reason string) uint32 {
	_, rest, ok := strings.Cut(reason, "MSR 0x")
	if !ok {
		return 0
	}
	var msr uint32
	fmt.Sscanf(rest, "%x", &msr)
	return msr
}

// key identifies what a probe result holds for: this host boot, this
// VMM build, this KVM device.
func (s *Selector) key(ctx context.Context) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ver := "unknown"
	if s.VMMVersion != nil {
		if v, err := s.VMMVersion(ctx); err == nil {
			ver = v
		} else {
			return ""
		}
	}
	dev := "absent"
	var st syscall.Stat_t
	if syscall.Stat(Device, &st) == nil {
		dev = fmt.Sprintf("%d:%d.%d", st.Rdev, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return strings.TrimSpace(string(boot)) + "|" + ver + "|" + dev
}
