package store

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
)

var actT0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func actAt(sec int) time.Time { return actT0.Add(time.Duration(sec) * time.Second) }

func lookupRow(vm, host string, sec int) ActivityRow {
	return ActivityRow{VM: vm, Key: "lookup\x00allowed\x00" + host, Event: api.ActivityEvent{
		Time: actAt(sec), Kind: api.ActLookup, Action: "allowed", Via: api.ViaGuest, Host: host,
	}}
}

func commandRow(vm string, sec int, argv ...string) ActivityRow {
	uid, exit := uint32(1000), 3
	return ActivityRow{VM: vm, Event: api.ActivityEvent{
		Time: actAt(sec), Kind: api.ActCommand, Action: "exec", UID: &uid, Via: api.ViaCLI,
		Argv: argv, Dir: "/work", Exit: &exit, DurationMS: 12, OutputBytes: 34,
	}}
}

func TestActivity(t *testing.T) {
	ctx := context.Background()
	uid, exit := uint32(1000), 3
	cmd := api.ActivityEvent{
		Time: actAt(1), Kind: api.ActCommand, Action: "exec", UID: &uid, Via: api.ViaCLI,
		Argv: []string{"make", "test"}, Dir: "/work", Exit: &exit, DurationMS: 12, OutputBytes: 34, Count: 1,
	}
	lookup := func(host string, first, last, count int) api.ActivityEvent {
		return api.ActivityEvent{Time: actAt(first), Kind: api.ActLookup, Action: "allowed", Via: api.ViaGuest, Host: host, Count: int64(count), Last: actAt(last)}
	}
	for _, c := range []struct {
		name    string
		batches [][]ActivityRow
		since   time.Time
		want    []api.ActivityEvent
	}{
		{
			name:    "single event keeps every field",
			batches: [][]ActivityRow{{commandRow("a", 1, "make", "test")}},
			want:    []api.ActivityEvent{cmd},
		},
		{
			name:    "counted event alone",
			batches: [][]ActivityRow{{lookupRow("a", "example.com", 1)}},
			want:    []api.ActivityEvent{lookup("example.com", 1, 1, 1)},
		},
		{
			name: "counted event counts across batches and within one",
			batches: [][]ActivityRow{
				{lookupRow("a", "example.com", 1), lookupRow("a", "example.com", 2)},
				{lookupRow("a", "example.com", 5)},
			},
			want: []api.ActivityEvent{lookup("example.com", 1, 5, 3)},
		},
		{
			name: "a row's count is added",
			batches: [][]ActivityRow{
				{lookupRow("a", "example.com", 1)},
				{func() ActivityRow { r := lookupRow("a", "example.com", 4); r.Event.Count = 10; return r }()},
			},
			want: []api.ActivityEvent{lookup("example.com", 1, 4, 11)},
		},
		{
			name: "last never goes back",
			batches: [][]ActivityRow{
				{lookupRow("a", "example.com", 1), lookupRow("a", "example.com", 9)},
				{lookupRow("a", "example.com", 3)},
			},
			want: []api.ActivityEvent{lookup("example.com", 1, 9, 3)},
		},
		{
			name: "same key, other vm, is another event",
			batches: [][]ActivityRow{
				{lookupRow("a", "example.com", 1), lookupRow("b", "example.com", 2), lookupRow("a", "example.org", 3)},
			},
			want: []api.ActivityEvent{lookup("example.com", 1, 1, 1), lookup("example.org", 3, 3, 1)},
		},
		{
			name: "appended order",
			batches: [][]ActivityRow{
				{lookupRow("a", "x.com", 1), commandRow("a", 2, "make", "test")},
				{lookupRow("a", "x.com", 3)},
			},
			want: []api.ActivityEvent{lookup("x.com", 1, 3, 2), func() api.ActivityEvent { e := cmd; e.Time = actAt(2); return e }()},
		},
		{
			name: "since keeps events at or after it, and counted events whose last is",
			batches: [][]ActivityRow{
				{commandRow("a", 1, "make", "test"), lookupRow("a", "old.com", 2), lookupRow("a", "busy.com", 3)},
				{lookupRow("a", "busy.com", 10), commandRow("a", 10, "make", "test"), lookupRow("a", "new.com", 11)},
			},
			since: actAt(10),
			want: []api.ActivityEvent{
				lookup("busy.com", 3, 10, 2),
				func() api.ActivityEvent { e := cmd; e.Time = actAt(10); return e }(),
				lookup("new.com", 11, 11, 1),
			},
		},
		{
			name:    "since after everything",
			batches: [][]ActivityRow{{commandRow("a", 1), lookupRow("a", "x.com", 2)}},
			since:   actAt(100),
			want:    []api.ActivityEvent{},
		},
		{
			name: "sub-second times compare as times",
			batches: [][]ActivityRow{{func() ActivityRow {
				r := lookupRow("a", "x.com", 0)
				r.Event.Time = actT0.Add(500 * time.Millisecond)
				return r
			}()}},
			// As RFC3339Nano text, "…:07Z" sorts after "…:07.5Z".
			since: actT0,
			want: []api.ActivityEvent{func() api.ActivityEvent {
				e := lookup("x.com", 0, 0, 1)
				e.Time = actT0.Add(500 * time.Millisecond)
				e.Last = e.Time
				return e
			}()},
		},
		{
			name: "no record",
			want: []api.ActivityEvent{},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t)
			for _, b := range c.batches {
				if err := s.AppendActivity(ctx, b, 0, nil); err != nil {
					t.Fatal(err)
				}
			}
			got, dropped, err := s.Activity(ctx, "a", c.since)
			if err != nil {
				t.Fatal(err)
			}
			if dropped != 0 {
				t.Errorf("dropped = %d, want 0", dropped)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("events:\n got %s\nwant %s", showActivity(got), showActivity(c.want))
			}
		})
	}
}

func showActivity(evs []api.ActivityEvent) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %+v", e)
	}
	return b.String()
}

func TestActivityBound(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name        string
		max         int
		batches     []int // rows per batch, all distinct
		dropped     int64 // dropped by the caller with the last batch
		wantStored  int
		wantDropped int64
	}{
		{name: "under the bound", max: 10, batches: []int{5, 5}, wantStored: 10},
		{name: "over by one trims to nine tenths", max: 10, batches: []int{5, 6}, wantStored: 9, wantDropped: 2},
		{name: "one big batch", max: 10, batches: []int{100}, wantStored: 9, wantDropped: 91},
		{name: "at the bound keeps all", max: 10, batches: []int{11, 1}, wantStored: 10, wantDropped: 2},
		{name: "trims again past the bound", max: 10, batches: []int{11, 1, 1}, wantStored: 9, wantDropped: 2 + 2},
		{name: "caller's dropped count is added", max: 10, batches: []int{3}, dropped: 7, wantStored: 3, wantDropped: 7},
		{name: "caller's dropped count alone", max: 10, batches: []int{0}, dropped: 4, wantStored: 0, wantDropped: 4},
		{name: "no bound", max: 0, batches: []int{500}, wantStored: 500},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t)
			seq := 0
			for i, n := range c.batches {
				var rows []ActivityRow
				for range n {
					seq++
					rows = append(rows, lookupRow("a", fmt.Sprintf("h%d.com", seq), seq))
				}
				// Another VM's rows never count against a's bound.
				rows = append(rows, commandRow("b", seq))
				var dropped map[string]int64
				if i == len(c.batches)-1 && c.dropped > 0 {
					dropped = map[string]int64{"a": c.dropped}
				}
				if err := s.AppendActivity(ctx, rows, c.max, dropped); err != nil {
					t.Fatal(err)
				}
			}
			got, dropped, err := s.Activity(ctx, "a", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.wantStored || dropped != c.wantDropped {
				t.Fatalf("stored %d, dropped %d; want %d, %d", len(got), dropped, c.wantStored, c.wantDropped)
			}
			// The newest are kept.
			if len(got) > 0 && got[len(got)-1].Host != fmt.Sprintf("h%d.com", seq) {
				t.Errorf("newest kept = %s, want h%d.com", got[len(got)-1].Host, seq)
			}
			if b, _, _ := s.Activity(ctx, "b", time.Time{}); len(b) != len(c.batches) {
				t.Errorf("vm b has %d events, want %d", len(b), len(c.batches))
			}
		})
	}
}

func TestDeleteActivity(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	rows := []ActivityRow{commandRow("a", 1), lookupRow("a", "x.com", 2), commandRow("b", 3)}
	if err := s.AppendActivity(ctx, rows, 1, map[string]int64{"a": 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteActivity(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, dropped, err := s.Activity(ctx, "a", time.Time{}); err != nil || len(got) != 0 || dropped != 0 {
		t.Fatalf("after delete: %d events, %d dropped, %v", len(got), dropped, err)
	}
	if got, _, err := s.Activity(ctx, "b", time.Time{}); err != nil || len(got) != 1 {
		t.Fatalf("other vm after delete: %d events, %v", len(got), err)
	}
	// A VM of the same name made later starts with a fresh record, its
	// counted events counted from one again.
	if err := s.AppendActivity(ctx, []ActivityRow{lookupRow("a", "x.com", 9)}, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Activity(ctx, "a", time.Time{}); len(got) != 1 || got[0].Count != 1 {
		t.Fatalf("after delete and append: %s", showActivity(got))
	}
	if err := s.DeleteActivity(ctx, "never"); err != nil {
		t.Fatalf("deleting a VM with no record: %v", err)
	}
}

func TestActivitySurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "banger.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rows := []ActivityRow{commandRow("a", 1, "ls"), lookupRow("a", "x.com", 2)}
	if err := s.AppendActivity(ctx, rows, 10, map[string]int64{"a": 3}); err != nil {
		t.Fatal(err)
	}
	before, _, err := s.Activity(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, dropped, err := s.Activity(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) || dropped != 3 {
		t.Fatalf("after reopen: %s, dropped %d; want %s, dropped 3", showActivity(after), dropped, showActivity(before))
	}
	// Counting goes on where it was.
	if err := s.AppendActivity(ctx, []ActivityRow{lookupRow("a", "x.com", 5)}, 10, nil); err != nil {
		t.Fatal(err)
	}
	after, _, _ = s.Activity(ctx, "a", time.Time{})
	if len(after) != 2 || after[1].Count != 2 || !after[1].Last.Equal(actAt(5)) {
		t.Fatalf("counted after reopen: %s", showActivity(after))
	}
}

func TestActivityMalformedRow(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, column, value string
	}{
		{"data", "data", `{"kind":`},
		{"time", "at", "yesterday"},
		{"last", "last", "tomorrow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t)
			if err := s.AppendActivity(ctx, []ActivityRow{commandRow("broken-vm", 1)}, 0, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.db.Exec(`UPDATE activity SET `+c.column+` = ?`, c.value); err != nil {
				t.Fatal(err)
			}
			_, _, err := s.Activity(ctx, "broken-vm", time.Time{})
			if err == nil || !strings.Contains(err.Error(), "broken-vm") {
				t.Fatalf("err = %v, want one naming the vm", err)
			}
		})
	}
}
