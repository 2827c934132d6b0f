package vm

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/service/vm/lent"
	"github.com/banger-dev/banger/internal/service/vm/template"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func as(uid uint32) context.Context {
	return peer.AsUID(context.Background(), uid)
}

// TestAnotherUsersVMDoesNotExist: what one user made is, to another,
// something that does not exist; every verb answers not found and changes
// nothing, and root sees it with its owner.
func TestAnotherUsersVMDoesNotExist(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, lay := newTestService(t, d)
	alice, bob, root := as(1000), as(1001), as(0)
	if _, err := s.Create(alice, api.VMCreateRequest{Name: "secret-project", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if vs, err := s.List(bob); err != nil || len(vs) != 0 {
		t.Fatalf("bob lists %+v, %v", vs, err)
	}
	if n, _ := s.Count(bob); n != 0 {
		t.Errorf("bob counts %d VMs", n)
	}
	const name = "secret-project"
	tries := map[string]func() error{
		"show":  func() error { _, err := s.Get(bob, name); return err },
		"start": func() error { _, err := s.Start(bob, name, api.VMStartRequest{}, operation.Discard); return err },
		"stop": func() error {
			_, err := s.Stop(bob, name, api.VMStopRequest{Timeout: "0s"}, operation.Discard)
			return err
		},
		"restart":  func() error { _, err := s.Restart(bob, name, api.VMStartRequest{}, operation.Discard); return err },
		"rm":       func() error { return s.Remove(bob, name, true) },
		"snapshot": func() error { return s.CheckSnapshot(bob, name, api.SnapshotRequest{WithLent: true}) },
		"fork":     func() error { return s.CheckFork(bob, name, api.ForkRequest{WithLent: true}) },
		"work":     func() error { return contents(s, nil).CheckWork(bob, name) },
		// A promote would make alice's disk an image of bob's.
		"promote": func() error {
			_, err := contents(s, nil).Promote(bob, api.ImagePromoteRequest{Name: "stolen", VM: name}, operation.Discard)
			return err
		},
		"pulled": func() error { _, err := contents(s, nil).WorkPulled(bob, name, api.WorkPulled{}); return err },
		"lend": func() error {
			_, err := contents(s, nil).AuthSync(bob, name, api.AuthSync{Env: map[string]string{"X": "y"}})
			return err
		},
		"logs":   func() error { return s.Logs(bob, name, false, io.Discard, func() {}) },
		"egress": func() error { _, err := s.Egress(bob, name); return err },
	}
	for verb, try := range tries {
		err := try()
		if errdefs.Code(err) != "not_found" || !strings.Contains(err.Error(), `vm "secret-project" does not exist`) {
			t.Errorf("bob's %s: %v; want not found", verb, err)
		}
	}
	// The name is taken, and that is all bob learns.
	_, err := s.Create(bob, api.VMCreateRequest{Name: name}, operation.Discard)
	if errdefs.Code(err) != "conflict" || !strings.Contains(err.Error(), "not available") || strings.Contains(err.Error(), "rm") {
		t.Errorf("bob's create of a taken name: %v", err)
	}
	// A near miss is not hinted with alice's name either.
	if _, err := s.Get(bob, "secret-projec"); err == nil || strings.Contains(err.Error(), name) {
		t.Errorf("bob's near miss: %v", err)
	}
	v, err := s.Get(alice, name)
	if err != nil || v.State != api.VMRunning || v.Owner != 1000 {
		t.Fatalf("alice's VM after bob's tries: %+v, %v", v, err)
	}
	if vs, _ := s.List(root); len(vs) != 1 || vs[0].Owner != 1000 {
		t.Errorf("root lists %+v", vs)
	}

	// Snapshots are their taker's.
	snaps := template.Dir(lay.Snapshots())
	build, err := snaps.Build("alices")
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps.Publish(build, template.Template{ID: "alices", Source: name, Owner: 1000, Key: template.Key{Image: "img", Kernel: "k"}}); err != nil {
		t.Fatal(err)
	}
	if ss, _ := s.Snapshots(bob); len(ss) != 0 {
		t.Errorf("bob lists snapshots %+v", ss)
	}
	if err := s.RemoveSnapshot(bob, "alices"); errdefs.Code(err) != "not_found" {
		t.Errorf("bob's snapshot rm: %v", err)
	}
	if _, err := s.Create(bob, api.VMCreateRequest{Name: "mine", Snapshot: "alices"}, operation.Discard); errdefs.Code(err) != "not_found" {
		t.Errorf("bob's fork of alice's snapshot: %v", err)
	}
	if ss, _ := s.Snapshots(root); len(ss) != 1 || ss[0].Owner != 1000 {
		t.Errorf("root lists snapshots %+v", ss)
	}
	if ss, _ := s.Snapshots(alice); len(ss) != 1 {
		t.Errorf("alice lists snapshots %+v", ss)
	}
}

// TestLentVMIsNotSnapshotByTheBackDoor: a VM holding lent credentials is
// refused a snapshot or a fork unless the caller says --with-lent, and
// the record survives a daemon restart.
func TestLentVMIsNotSnapshotByTheBackDoor(t *testing.T) {
	d := &fakeDriver{console: readyConsole, snapshots: true}
	s, st, lay := newTestService(t, d)
	ctx := context.Background()
	if _, err := s.Create(ctx, api.VMCreateRequest{Name: "w", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	v, err := s.get(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	if err := lent.Add(s.d.Layout.VM(v.Name), v, []string{"$GH_TOKEN", "~/.netrc"}); err != nil {
		t.Fatal(err)
	}
	s2 := New(Deps{Store: st, Images: s.d.Images, Kernels: fakeKernels{}, Driver: d, Layout: lay, Log: s.d.Log})
	for _, check := range []func() error{
		func() error { return s2.CheckSnapshot(ctx, "w", api.SnapshotRequest{}) },
		func() error { return s2.CheckFork(ctx, "w", api.ForkRequest{}) },
	} {
		err := check()
		if errdefs.Code(err) != "conflict" || !strings.Contains(err.Error(), "$GH_TOKEN, ~/.netrc") || !strings.Contains(err.Error(), "--with-lent") {
			t.Errorf("snapshot of a lent VM: %v", err)
		}
	}
	if err := s2.CheckSnapshot(ctx, "w", api.SnapshotRequest{WithLent: true}); err != nil {
		t.Errorf("snapshot --with-lent: %v", err)
	}
	got, _ := s2.Get(ctx, "w")
	if strings.Join(got.Lent, ",") != "$GH_TOKEN,~/.netrc" {
		t.Errorf("vm show after a restart: lent %v", got.Lent)
	}
	// A later boot holds nothing lent.
	if _, err := s2.Restart(ctx, "w", api.VMStartRequest{}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Get(ctx, "w"); len(got.Lent) != 0 {
		t.Errorf("lent after a restart of the VM: %v", got.Lent)
	}
}

// TestQuota: a user's VMs are bounded in number, and its running VMs in
// CPUs and memory, with the counts in the refusal; root is not bounded.
func TestQuota(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	s.quota.Limits = Quota{VMs: 2, CPUs: 2, MemoryMB: 1024}
	alice, root := as(1000), as(0)
	for _, name := range []string{"a1", "a2"} {
		if _, err := s.Create(alice, api.VMCreateRequest{Name: name}, operation.Discard); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Create(alice, api.VMCreateRequest{Name: "a3"}, operation.Discard)
	if errdefs.Code(err) != "quota_exceeded" || !strings.Contains(err.Error(), "you have 2 VMs, and max_vms_per_user is 2") {
		t.Fatalf("third VM: %v", err)
	}
	for _, name := range []string{"r1", "r2", "r3"} {
		if _, err := s.Create(root, api.VMCreateRequest{Name: name, CPUs: 2}, operation.Discard); err != nil {
			t.Fatalf("root's %s: %v", name, err)
		}
	}
	if _, err := s.Start(alice, "a1", api.VMStartRequest{}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	// a1 takes 1 CPU and 256 MiB of 2 and 1024: a2 with 1 CPU fits.
	if _, err := s.Start(alice, "a2", api.VMStartRequest{}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stop(alice, "a2", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(alice, "a2", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(alice, api.VMCreateRequest{Name: "big", CPUs: 2}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	_, err = s.Start(alice, "big", api.VMStartRequest{}, operation.Discard)
	if errdefs.Code(err) != "quota_exceeded" || !strings.Contains(err.Error(), "needs 2 CPUs, and your running VMs (a1) use 1 of max_cpus_per_user = 2") {
		t.Fatalf("start past the CPU quota: %v", err)
	}
	if v, _ := s.Get(alice, "big"); v.State != api.VMStopped {
		t.Errorf("refused VM is %s", v.State)
	}
	if _, err := s.Start(root, "r1", api.VMStartRequest{}, operation.Discard); err != nil {
		t.Errorf("root's start: %v", err)
	}
}
