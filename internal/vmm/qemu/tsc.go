package qemu

import (
	"runtime"
	"sync"
	"time"
)

var (
	tscOnce sync.Once
	tscKHz  int
)

// HostTSCKHz is the rate of the host's time stamp counter, measured once
// against the monotonic clock. Under TCG a guest's TSC is the host's
// (qemu reads it for the guest's rdtsc), so this is the rate the guest
// must believe: told 2 GHz on a 2.45 GHz host, a guest's clock ran 22%
// fast (its timer was calibrated against the TSC), 1.3 s ahead of the
// host 6 s after it was set.
func HostTSCKHz() int {
	tscOnce.Do(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		best := 0
		for range 3 {
			t0, c0 := time.Now(), rdtsc()
			time.Sleep(20 * time.Millisecond)
			c1, t1 := rdtsc(), time.Now()
			// The ticks are counted within the timed span, so a pair
			// can only come out low (a preemption at either end): the
			// highest of three is the closest.
			if khz := int(float64(c1-c0) / float64(t1.Sub(t0).Nanoseconds()) * 1e6); c1 > c0 && khz > best {
				best = khz
			}
		}
		// Rounded to a MHz, so that the command line (and what a template
		// was saved with) does not change with each measurement.
		tscKHz = (best + 500) / 1000 * 1000
	})
	return tscKHz
}
