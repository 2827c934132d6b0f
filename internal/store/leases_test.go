package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestLeases(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	subnet := netip.MustParsePrefix("10.213.0.0/29") // .1 the bridge, .2-.6 guests, .7 broadcast
	gw := netip.MustParseAddr("10.213.0.1")
	lease := func(vm string) (Lease, bool, error) { return s.Lease(ctx, vm, subnet, gw) }
	a, fresh, err := lease("a")
	if err != nil || !fresh || a.IP.String() != "10.213.0.2" || a.MAC != "02:b4:0a:d5:00:02" {
		t.Fatalf("first lease %+v fresh=%v %v", a, fresh, err)
	}
	// A VM keeps its lease.
	if again, fresh, err := lease("a"); err != nil || fresh || again != a {
		t.Fatalf("lease again: %+v fresh=%v %v", again, fresh, err)
	}
	for _, vm := range []string{"b", "c", "d", "e"} {
		if _, _, err := lease(vm); err != nil {
			t.Fatal(err)
		}
	}
	// The subnet is full: no broadcast address, no network address.
	if _, _, err := lease("f"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("lease in a full subnet: %v", err)
	}
	// A released address is the next one handed out.
	if err := s.RecordResolved(ctx, "c", "a.test", []netip.Addr{netip.MustParseAddr("203.0.113.10")}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLease(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := s.ResolvedBy(ctx, "c"); len(rs) != 0 {
		t.Errorf("vm c's lookups outlived its lease: %+v", rs)
	}
	if f, _, err := lease("f"); err != nil || f.IP.String() != "10.213.0.4" {
		t.Errorf("lease after a release: %+v %v", f, err)
	}
	ls, err := s.Leases(ctx)
	if err != nil || len(ls) != 5 {
		t.Errorf("leases %+v %v", ls, err)
	}
}

func TestRecordResolved(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := netip.MustParseAddr("203.0.113.10")
	for i := 0; i < 3; i++ {
		if err := s.RecordResolved(ctx, "vm", "a.test", []netip.Addr{a}); err != nil {
			t.Fatal(err)
		}
	}
	s.RecordResolved(ctx, "vm", "nothing.test", nil)
	s.RecordResolved(ctx, "other", "b.test", []netip.Addr{a})
	rs, err := s.ResolvedBy(ctx, "vm")
	if err != nil || len(rs) != 2 {
		t.Fatalf("resolved %+v %v", rs, err)
	}
	if r := rs[0]; r.Name != "a.test" || r.Addr != a.String() || r.Count != 3 || r.Last.Before(r.First) {
		t.Errorf("a.test: %+v", r)
	}
	if r := rs[1]; r.Name != "nothing.test" || r.Addr != "" || r.Count != 1 {
		t.Errorf("a name without an address: %+v", r)
	}
}

// A guest looking up endless made-up names fills its record up to a
// bound, no further; names it knows still count.
func TestRecordResolvedIsBounded(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for i := 0; i < MaxResolved; i++ {
		if err := s.RecordResolved(ctx, "vm", fmt.Sprintf("n%d.test", i), nil); err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	if err := s.RecordResolved(ctx, "vm", "one-more.test", nil); !errors.Is(err, ErrTooManyResolved) {
		t.Fatalf("past the bound: %v", err)
	}
	if err := s.RecordResolved(ctx, "vm", "n7.test", nil); err != nil {
		t.Fatalf("a known name past the bound: %v", err)
	}
	if err := s.RecordResolved(ctx, "other", "n7.test", nil); err != nil {
		t.Fatalf("another VM: %v", err)
	}
	rs, _ := s.ResolvedBy(ctx, "vm")
	if len(rs) != MaxResolved {
		t.Errorf("%d rows, want %d", len(rs), MaxResolved)
	}
	for _, r := range rs {
		if r.Name == "n7.test" && r.Count != 2 {
			t.Errorf("n7.test counted %d", r.Count)
		}
	}
}
