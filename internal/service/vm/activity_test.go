package vm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// memActivity keeps records in memory: the recorder's own tests hold the
// store; these hold what the VM service puts in it.
type memActivity struct {
	mu  sync.Mutex
	evs map[string][]api.ActivityEvent
}

func (m *memActivity) Record(vm string, ev api.ActivityEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.evs == nil {
		m.evs = map[string][]api.ActivityEvent{}
	}
	m.evs[vm] = append(m.evs[vm], ev)
}

func (m *memActivity) Report(ctx context.Context, vm string, since time.Time) (api.ActivityReport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return api.ActivityReport{VM: vm, Events: append([]api.ActivityEvent{}, m.evs[vm]...), Counts: map[string]int64{}}, nil
}

func (m *memActivity) Remove(ctx context.Context, vm string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.evs, vm)
	return nil
}

func (m *memActivity) actions(vm string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.evs[vm] {
		out = append(out, e.Kind+"/"+e.Action)
	}
	return out
}

// TestActivityRecord: the VM's life goes on its record with the caller's
// uid; a client reports commands and files only, checked and stamped
// with its own uid whatever it claims; another user's VM takes nothing;
// the record goes with the VM.
func TestActivityRecord(t *testing.T) {
	d := &fakeDriver{console: readyConsole}
	s, _, _ := newTestService(t, d)
	rec := &memActivity{}
	s.d.Activity = rec
	alice := peer.NewContext(context.Background(), unix.Ucred{Uid: 1000, Gid: 1000, Pid: 1})
	bob := peer.NewContext(context.Background(), unix.Ucred{Uid: 1001, Gid: 1001, Pid: 1})
	if _, err := s.Create(alice, api.VMCreateRequest{Name: "web", Start: true}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stop(alice, "web", api.VMStopRequest{Timeout: "0s"}, operation.Discard); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.actions("web"), " "); got != "lifecycle/create lifecycle/start lifecycle/stop" {
		t.Errorf("the VM's life: %s", got)
	}
	for _, e := range rec.evs["web"] {
		if e.UID == nil || *e.UID != 1000 {
			t.Errorf("%s/%s: uid %v, want the caller's, 1000", e.Kind, e.Action, e.UID)
		}
	}

	zero := 0
	cmd := api.ActivityEvent{Time: time.Now(), Kind: api.ActCommand, Action: "exec", Via: api.ViaCLI, Argv: []string{"git", "status"}, Exit: &zero, DurationMS: 12}
	forged := cmd
	uid := uint32(0)
	forged.UID, forged.Host, forged.Count = &uid, "evil.test", 99
	if err := s.RecordActivity(alice, "web", api.ActivityRequest{Events: []api.ActivityEvent{forged}}); err != nil {
		t.Fatal(err)
	}
	got := rec.evs["web"][len(rec.evs["web"])-1]
	if got.UID == nil || *got.UID != 1000 || got.Host != "" || got.Count != 0 || strings.Join(got.Argv, " ") != "git status" {
		t.Errorf("a reported command as recorded: %+v", got)
	}
	bad := []struct {
		name string
		ev   api.ActivityEvent
		want string
	}{
		{"a lookup", api.ActivityEvent{Kind: api.ActLookup, Action: "allowed", Via: api.ViaCLI, Host: "a.test"}, "a client reports"},
		{"the VM's life", api.ActivityEvent{Kind: api.ActLifecycle, Action: "stop", Via: api.ViaCLI}, "a client reports"},
		{"a secret's use", api.ActivityEvent{Kind: api.ActSecret, Action: "use", Via: api.ViaCLI}, "a client reports"},
		{"an unknown action", api.ActivityEvent{Kind: api.ActCommand, Action: "rm", Via: api.ViaCLI}, "want one of"},
		{"as the guest", api.ActivityEvent{Kind: api.ActCommand, Action: "exec", Via: api.ViaGuest}, "via"},
		{"too long an argument", api.ActivityEvent{Kind: api.ActCommand, Action: "exec", Via: api.ViaCLI, Argv: []string{strings.Repeat("a", 5000)}}, "at most 4096"},
		{"a negative size", api.ActivityEvent{Kind: api.ActFile, Action: "write", Via: api.ViaCLI, Bytes: -1}, "negative"},
	}
	n := len(rec.evs["web"])
	for _, b := range bad {
		err := s.RecordActivity(alice, "web", api.ActivityRequest{Events: []api.ActivityEvent{cmd, b.ev}})
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want invalid with %q", b.name, err, b.want)
		}
	}
	many := make([]api.ActivityEvent, maxReported+1)
	for i := range many {
		many[i] = cmd
	}
	if err := s.RecordActivity(alice, "web", api.ActivityRequest{Events: many}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("%d events at once: %v", len(many), err)
	}
	if len(rec.evs["web"]) != n {
		t.Errorf("refused requests recorded %d events (a request is all or nothing)", len(rec.evs["web"])-n)
	}
	// Another user's VM does not exist to bob: nothing lands on it, and
	// he cannot read it.
	if err := s.RecordActivity(bob, "web", api.ActivityRequest{Events: []api.ActivityEvent{cmd}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob records on alice's VM: %v", err)
	}
	if _, err := s.Activity(bob, "web", time.Time{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob reads alice's record: %v", err)
	}
	if len(rec.evs["web"]) != n {
		t.Error("bob's request reached alice's record")
	}
	if err := s.Remove(alice, "web", true); err != nil {
		t.Fatal(err)
	}
	if len(rec.evs["web"]) != 0 {
		t.Errorf("the record outlived its VM: %v", rec.actions("web"))
	}
}
