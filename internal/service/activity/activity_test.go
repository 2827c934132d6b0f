package activity

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

func openStore(t testing.TB) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "banger.db")
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func newRecorder(t testing.TB, st *store.Store, o Options) *Recorder {
	t.Helper()
	r := New(st, o)
	t.Cleanup(func() { r.Close() })
	return r
}

func lookup(host string) api.ActivityEvent {
	return api.ActivityEvent{Kind: api.ActLookup, Action: "allowed", Via: api.ViaGuest, Host: host}
}

func command(argv ...string) api.ActivityEvent {
	uid := uint32(1000)
	return api.ActivityEvent{Kind: api.ActCommand, Action: "exec", UID: &uid, Via: api.ViaCLI, Argv: argv}
}

func TestKey(t *testing.T) {
	for _, c := range []struct {
		name string
		ev   api.ActivityEvent
		want string
	}{
		{"lookup", api.ActivityEvent{Kind: api.ActLookup, Action: "refused", Host: "evil.com"}, "lookup\x00refused\x00evil.com"},
		{"connection", api.ActivityEvent{Kind: api.ActConnection, Action: "allowed", Addr: "1.2.3.4:443", Host: "ignored"}, "connection\x00allowed\x001.2.3.4:443"},
		{"secret", api.ActivityEvent{Kind: api.ActSecret, Action: "use", Secret: "GH", Host: "api.github.com", Method: "GET", URL: "/user"},
			"secret\x00use\x00GH\x00api.github.com\x00GET\x00/user"},
		{"command", command("ls"), ""},
		{"file", api.ActivityEvent{Kind: api.ActFile, Action: "write", Path: "/work/x"}, ""},
		{"lifecycle", api.ActivityEvent{Kind: api.ActLifecycle, Action: "start"}, ""},
		{"unknown kind", api.ActivityEvent{Kind: "other", Host: "x"}, ""},
	} {
		if got := Key(c.ev); got != c.want {
			t.Errorf("%s: Key = %q, want %q", c.name, got, c.want)
		}
	}
	// The separator keeps fields apart: a host cannot pass for an action.
	a := Key(api.ActivityEvent{Kind: api.ActLookup, Action: "allowed", Host: "x"})
	b := Key(api.ActivityEvent{Kind: api.ActLookup, Action: "allowedx", Host: ""})
	if a == b {
		t.Errorf("distinct lookups share key %q", a)
	}
}

func TestRecordReport(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	r := newRecorder(t, st, Options{})
	before := time.Now()
	r.Record("a", api.ActivityEvent{Kind: api.ActLifecycle, Action: "create", Via: api.ViaDaemon})
	r.Record("a", command("make", "test"))
	for range 3 {
		r.Record("a", lookup("example.com"))
	}
	r.Record("a", lookup("example.org"))
	r.Record("a", api.ActivityEvent{Kind: api.ActConnection, Action: "refused", Addr: "10.0.0.1:22", Count: 5})
	r.Record("a", api.ActivityEvent{Kind: api.ActFile, Action: "write", Path: "/work/x", Bytes: 3})
	stamped := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.Record("a", api.ActivityEvent{Time: stamped, Kind: api.ActSecret, Action: "attempt", Secret: "GH", Host: "evil.com"})
	r.Record("b", command("ls"))

	rep, err := r.Report(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VM != "a" || rep.Dropped != 0 || !rep.Since.IsZero() {
		t.Errorf("report = vm %q, dropped %d, since %v", rep.VM, rep.Dropped, rep.Since)
	}
	var got []string
	for _, ev := range rep.Events {
		got = append(got, fmt.Sprintf("%s %s %d", ev.Kind, ev.Action, ev.Count))
	}
	want := []string{"lifecycle create 1", "command exec 1", "lookup allowed 3", "lookup allowed 1", "connection refused 5", "file write 1", "secret attempt 1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	wantCounts := map[string]int64{api.ActLifecycle: 1, api.ActCommand: 1, api.ActLookup: 4, api.ActConnection: 5, api.ActFile: 1, api.ActSecret: 1}
	if !reflect.DeepEqual(rep.Counts, wantCounts) {
		t.Errorf("counts = %v, want %v", rep.Counts, wantCounts)
	}
	if ev := rep.Events[1]; ev.Time.Before(before.Add(-time.Second)) || ev.Time.After(time.Now()) || ev.UID == nil || *ev.UID != 1000 || !reflect.DeepEqual(ev.Argv, []string{"make", "test"}) {
		t.Errorf("command event = %+v", ev)
	}
	if ev := rep.Events[len(rep.Events)-1]; !ev.Time.Equal(stamped) {
		t.Errorf("a recorded time was changed: %v, want %v", ev.Time, stamped)
	}

	// From since on: the lookups happened again, the rest did not.
	since := time.Now()
	r.Record("a", lookup("example.com"))
	rep, err = r.Report(ctx, "a", since)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 1 || rep.Events[0].Host != "example.com" || rep.Events[0].Count != 4 || !rep.Since.Equal(since) {
		t.Errorf("report since = %+v", rep)
	}
}

func TestConcurrentRecord(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	const writers, each = 8, 500
	r := newRecorder(t, st, Options{Queue: writers * each})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r.Record("a", command("w", fmt.Sprint(w), fmt.Sprint(i)))
				r.Record("b", lookup("same.com"))
				if i%100 == 0 {
					if err := r.Flush(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	rep, err := r.Report(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != writers*each || rep.Dropped != 0 {
		t.Fatalf("a: %d events, %d dropped; want %d, 0", len(rep.Events), rep.Dropped, writers*each)
	}
	seen := map[string]bool{}
	for _, ev := range rep.Events {
		seen[strings.Join(ev.Argv, " ")] = true
	}
	if len(seen) != writers*each {
		t.Errorf("a: %d distinct commands, want %d", len(seen), writers*each)
	}
	rep, err = r.Report(ctx, "b", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 1 || rep.Events[0].Count != writers*each || rep.Counts[api.ActLookup] != writers*each {
		t.Fatalf("b: %d events, count %v; want one counted %d times", len(rep.Events), rep.Counts, writers*each)
	}
}

// TestBound is a guest looking up 100,000 distinct names: the record
// keeps at most Max of them and counts the rest as dropped.
func TestBound(t *testing.T) {
	const n, max = 100_000, 10_000
	for _, c := range []struct {
		name string
		// flushEvery paces the flood so that every event reaches the
		// store and the bound, not the queue, lets go of them; 0 is one
		// burst.
		flushEvery int
	}{
		{"paced", 1000},
		{"burst", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			st, _ := openStore(t)
			r := newRecorder(t, st, Options{Max: max})
			start := time.Now()
			for i := range n {
				r.Record("flood", lookup(fmt.Sprintf("%016x.example.com", rand.Uint64())))
				if c.flushEvery > 0 && i%c.flushEvery == c.flushEvery-1 {
					if err := r.Flush(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			recorded := time.Since(start)
			rep, err := r.Report(ctx, "flood", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d lookups: recorded in %v, written in %v; %d stored, %d dropped",
				n, recorded, time.Since(start), len(rep.Events), rep.Dropped)
			if len(rep.Events) > max {
				t.Errorf("%d events stored, bound is %d", len(rep.Events), max)
			}
			if c.flushEvery > 0 && len(rep.Events) < max*9/10 {
				t.Errorf("%d events stored, want at least %d", len(rep.Events), max*9/10)
			}
			if int64(len(rep.Events))+rep.Dropped != n {
				t.Errorf("stored %d + dropped %d != %d", len(rep.Events), rep.Dropped, n)
			}
		})
	}
}

// TestFullQueue holds the database's write lock so the writer is stuck
// in its first batch: Record must go on without blocking, counting what
// the queue cannot take, and Flush must wait, not deadlock.
func TestFullQueue(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	r := newRecorder(t, st, Options{Queue: 1})

	locked, release := make(chan struct{}), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- st.Tx(ctx, func(tx *sql.Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked

	const n = 10_000
	recorded := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for i := range n {
			r.Record("a", command("cmd", fmt.Sprint(i)))
		}
		recorded <- time.Since(start)
	}()
	select {
	case d := <-recorded:
		t.Logf("%d Record calls on a full queue: %v", n, d)
	case <-time.After(5 * time.Second):
		// The store's busy timeout is 10s: calls still running at 5s
		// are waiting on the writer.
		t.Fatal("Record blocked on a full queue")
	}

	flushed := make(chan error, 1)
	go func() { flushed <- r.Flush(ctx) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the writer was stuck", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-txDone; err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	rep, err := r.Report(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d stored, %d dropped", len(rep.Events), rep.Dropped)
	if int64(len(rep.Events))+rep.Dropped != n || rep.Dropped < n-10 {
		t.Fatalf("stored %d + dropped %d; want %d, nearly all dropped", len(rep.Events), rep.Dropped, n)
	}
}

func TestNilRecorder(t *testing.T) {
	ctx := context.Background()
	var r *Recorder
	r.Record("a", command("ls"))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Report(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VM != "a" || rep.Events == nil || len(rep.Events) != 0 || rep.Counts == nil || len(rep.Counts) != 0 || rep.Dropped != 0 {
		t.Fatalf("nil recorder's report = %+v", rep)
	}
	if err := r.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	r := newRecorder(t, st, Options{Max: 2})
	for _, vm := range []string{"a", "b"} {
		r.Record(vm, command("one"))
		r.Record(vm, command("two"))
		r.Record(vm, command("three"))
	}
	// Not flushed: Remove writes what is queued before it deletes.
	if err := r.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Report(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 0 || rep.Dropped != 0 {
		t.Fatalf("after Remove: %d events, %d dropped", len(rep.Events), rep.Dropped)
	}
	rep, err = r.Report(ctx, "b", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(rep.Events))+rep.Dropped != 3 {
		t.Fatalf("other VM after Remove: %d events, %d dropped", len(rep.Events), rep.Dropped)
	}
}

// TestReopen is a daemon restart: a new Recorder on the reopened store
// reads the record the old one wrote, and Close wrote what was queued.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "banger.db")
	st, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r := New(st, Options{})
	r.Record("a", command("before", "restart"))
	r.Record("a", lookup("x.com"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Record("a", command("after", "close")) // let go of, and no panic
	if err := r.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
	st.Close()

	st, err = store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r = newRecorder(t, st, Options{})
	r.Record("a", lookup("x.com"))
	rep, err := r.Report(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Events) != 2 || strings.Join(rep.Events[0].Argv, " ") != "before restart" || rep.Events[1].Count != 2 {
		t.Fatalf("after reopen: %+v", rep.Events)
	}
}

// TestStoreErrorKeepsWriter: a batch the store refuses is logged and
// counted as dropped, and the writer goes on.
func TestStoreErrorKeepsWriter(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	var logged bytes.Buffer
	r := newRecorder(t, st, Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	st.Close()
	r.Record("a", command("one"))
	r.Record("a", lookup("x.com"))
	r.Record("a", lookup("x.com"))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The marker's close follows the log line: reading it here is safe.
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "write failed") {
		t.Errorf("log = %q, want a warning", logged.String())
	}
	r.mu.Lock()
	dropped := r.dropped["a"]
	r.mu.Unlock()
	if dropped != 3 {
		t.Errorf("dropped for a = %d, want 3", dropped)
	}
	r.Record("a", command("two"))
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("writer stopped after a store error: %v", err)
	}
}

func TestFlushContext(t *testing.T) {
	st, _ := openStore(t)
	r := newRecorder(t, st, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either the marker went in and was written at once, or the context
	// ended the wait: never a hang.
	if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
}

// BenchmarkRecord is the cost of an event, written: Record, and a Flush
// every 1000 so that the writer's work is in the time.
func BenchmarkRecord(b *testing.B) {
	for _, c := range []struct {
		name  string
		event func(i int) api.ActivityEvent
	}{
		{"distinct", func(i int) api.ActivityEvent { return lookup(fmt.Sprintf("h%d.example.com", i)) }},
		{"repeated", func(i int) api.ActivityEvent { return lookup(fmt.Sprintf("h%d.example.com", i%16)) }},
		{"command", func(i int) api.ActivityEvent { return command("make", "test", fmt.Sprint(i)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			st, _ := openStore(b)
			r := newRecorder(b, st, Options{})
			i := 0
			for b.Loop() {
				r.Record("bench", c.event(i))
				i++
				if i%1000 == 0 {
					if err := r.Flush(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := r.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestClip: an event's strings are bounded whatever sends them (a
// guest's URL path, a client's argv), cut on a rune boundary and marked,
// and the caller's slices are left as they were.
func TestClip(t *testing.T) {
	argv := []string{"sh", "-c", strings.Repeat("é", 5000)}
	ev := api.ActivityEvent{Kind: api.ActSecret, URL: "/" + strings.Repeat("a", 1<<20), Host: "api.test", Argv: argv,
		Names: make([]string, 100)}
	clip(&ev)
	if len(ev.URL) > maxField || !strings.HasSuffix(ev.URL, "…") || ev.Host != "api.test" {
		t.Errorf("URL clipped to %d bytes (%q...), host %q", len(ev.URL), ev.URL[:10], ev.Host)
	}
	total := 0
	for _, a := range ev.Argv {
		total += len(a)
		if !utf8.ValidString(a) {
			t.Errorf("an argument cut inside a rune")
		}
	}
	if total > maxArgv+len("…") || ev.Argv[0] != "sh" || !strings.HasSuffix(ev.Argv[2], "…") {
		t.Errorf("argv clipped to %d bytes: %q...", total, ev.Argv[:2])
	}
	if len(ev.Names) != maxNames+1 || ev.Names[maxNames] != "…" {
		t.Errorf("%d names kept", len(ev.Names))
	}
	if len(argv[2]) != 10000 {
		t.Error("clip changed the caller's argv")
	}
}
