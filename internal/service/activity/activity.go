// Package activity is the recorder of VMs' activity records: events are
// queued without blocking the caller (a guest's DNS lookup must not wait
// on the disk), written in batches by one goroutine, and bounded per VM,
// the oldest let go of first and counted.
package activity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Options tune a Recorder.
type Options struct {
	// Max is how many events are kept per VM (0: 10000; negative: no
	// bound). A counted event is one, whatever its count.
	Max int
	// Queue is how many events may wait to be written (0: 4096); past it,
	// events are dropped and counted.
	Queue int
	// Log gets what the recorder could not write (nil: slog.Default()).
	Log *slog.Logger
}

const (
	defaultMax   = 10000
	defaultQueue = 4096
	// batchMax is the most events one transaction writes: enough that a
	// flood costs few commits, few enough that a flush waits little.
	batchMax = 256
)

// ErrClosed is what a closed Recorder's Flush, Report and Remove return.
var ErrClosed = errors.New("activity recorder closed")

// Recorder queues VMs' events and writes them to the store. A nil
// *Recorder records nothing: recording is off.
type Recorder struct {
	st  *store.Store
	max int
	log *slog.Logger

	queue  chan item
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool

	mu sync.Mutex
	// dropped counts, per VM, the events let go of since the last batch:
	// the queue was full, or the store failed them.
	dropped map[string]int64
}

// item is an event to write, or a flush marker: closed once everything
// queued before it is written.
type item struct {
	vm    string
	ev    api.ActivityEvent
	flush chan struct{}
}

// New starts a Recorder writing to st. Close stops it.
func New(st *store.Store, o Options) *Recorder {
	if o.Max == 0 {
		o.Max = defaultMax
	}
	if o.Queue <= 0 {
		o.Queue = defaultQueue
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	r := &Recorder{
		st:      st,
		max:     o.Max,
		log:     o.Log,
		queue:   make(chan item, o.Queue),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		dropped: map[string]int64{},
	}
	go r.run()
	return r
}

// Key is what makes events one counted event: those of a VM with the
// same non-empty Key are stored once, with a count. Lookups, connections
// and secrets are counted (a guest may make the same one thousands of
// times); every other kind is a single event, Key "".
func Key(ev api.ActivityEvent) string {
	switch ev.Kind {
	case api.ActLookup:
		return "lookup\x00" + ev.Action + "\x00" + ev.Host
	case api.ActConnection:
		return "connection\x00" + ev.Action + "\x00" + ev.Addr
	case api.ActSecret:
		return "secret\x00" + ev.Action + "\x00" + ev.Secret + "\x00" + ev.Host + "\x00" + ev.Method + "\x00" + ev.URL
	}
	return ""
}

// Record queues ev for vm, its Time set to now when zero. It never
// blocks: when the queue is full the event is let go of and counted as
// dropped for vm.
func (r *Recorder) Record(vm string, ev api.ActivityEvent) {
	if r == nil || r.closed.Load() {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	clip(&ev)
	select {
	case r.queue <- item{vm: vm, ev: ev}:
	default:
		r.mu.Lock()
		r.dropped[vm]++
		r.mu.Unlock()
	}
}

// Bounds of one event's strings. The record's bound counts events; these
// bound their bytes, so that a guest's 1 MiB URL path, or a client's
// megabyte of argv, cannot make 10000 events gigabytes.
const (
	maxField = 512  // a host, address, URL path, directory...
	maxArgv  = 4096 // all of a command's arguments together
	maxNames = 64   // lent or given names
)

// clip cuts ev's strings to their bounds, marking each cut with "…".
func clip(ev *api.ActivityEvent) {
	// The caller's slices are its own.
	ev.Names, ev.Argv = slices.Clone(ev.Names), slices.Clone(ev.Argv)
	for _, f := range []*string{&ev.Host, &ev.Addr, &ev.Secret, &ev.Method, &ev.URL, &ev.Path, &ev.Dir, &ev.Detail} {
		*f = cut(*f, maxField)
	}
	if len(ev.Names) > maxNames {
		ev.Names = append(ev.Names[:maxNames:maxNames], "…")
	}
	for i := range ev.Names {
		ev.Names[i] = cut(ev.Names[i], maxField)
	}
	budget := maxArgv
	for i, a := range ev.Argv {
		if budget <= 0 {
			ev.Argv = append(ev.Argv[:i:i], "…")
			break
		}
		ev.Argv[i] = cut(a, budget)
		budget -= len(ev.Argv[i])
	}
}

// cut is s in at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)] + "…"
}

// Flush returns once every event recorded before the call is in the
// store (or counted as dropped).
func (r *Recorder) Flush(ctx context.Context) error {
	if r == nil {
		return nil
	}
	done := make(chan struct{})
	// The marker waits its turn behind a full queue rather than being
	// dropped: the writer always drains, so this cannot wait forever.
	select {
	case r.queue <- item{flush: done}:
	case <-r.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("flush activity: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-r.done:
		// The writer drains the queue before it stops, markers
		// included.
		select {
		case <-done:
			return nil
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return fmt.Errorf("flush activity: %w", ctx.Err())
	}
}

// Report flushes, then returns vm's record from since on (zero: all).
func (r *Recorder) Report(ctx context.Context, vm string, since time.Time) (api.ActivityReport, error) {
	rep := api.ActivityReport{VM: vm, Since: since, Counts: map[string]int64{}, Events: []api.ActivityEvent{}}
	if r == nil {
		return rep, nil
	}
	if err := r.Flush(ctx); err != nil {
		return api.ActivityReport{}, fmt.Errorf("report activity of vm %s: %w", vm, err)
	}
	events, dropped, err := r.st.Activity(ctx, vm, since)
	if err != nil {
		return api.ActivityReport{}, fmt.Errorf("report activity of vm %s: %w", vm, err)
	}
	for _, ev := range events {
		n := int64(1)
		if Key(ev) != "" && ev.Count > 0 {
			n = ev.Count
		}
		rep.Counts[ev.Kind] += n
	}
	rep.Events, rep.Dropped = events, dropped
	return rep, nil
}

// Remove flushes, then deletes vm's record: the VM is being removed.
func (r *Recorder) Remove(ctx context.Context, vm string) error {
	if r == nil {
		return nil
	}
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("remove activity of vm %s: %w", vm, err)
	}
	r.mu.Lock()
	delete(r.dropped, vm)
	r.mu.Unlock()
	if err := r.st.DeleteActivity(ctx, vm); err != nil {
		return fmt.Errorf("remove activity of vm %s: %w", vm, err)
	}
	return nil
}

// Close writes what is queued and stops the writer. Events recorded
// after it are let go of. The store stays open: it is the caller's.
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	r.once.Do(func() {
		r.closed.Store(true)
		close(r.stop)
	})
	<-r.done
	return nil
}

// run is the writer: it takes what is queued, up to batchMax events, and
// writes it in one transaction, until Close.
func (r *Recorder) run() {
	defer close(r.done)
	var b batch
	for {
		select {
		case it := <-r.queue:
			b.add(it)
		case <-r.stop:
			r.drain(&b)
			return
		}
	more:
		for len(b.rows) < batchMax {
			select {
			case it := <-r.queue:
				b.add(it)
			default:
				break more
			}
		}
		r.write(&b)
	}
}

// drain writes everything still queued, at Close.
func (r *Recorder) drain(b *batch) {
	for {
		select {
		case it := <-r.queue:
			b.add(it)
			if len(b.rows) >= batchMax {
				r.write(b)
			}
		default:
			r.write(b)
			return
		}
	}
}

// batch is what one write takes: the rows, the Record calls each VM made
// of them (a counted event's rows are merged), and the flush markers to
// close once they are written.
type batch struct {
	rows    []store.ActivityRow
	index   map[[2]string]int
	records map[string]int64
	markers []chan struct{}
}

func (b *batch) add(it item) {
	if it.flush != nil {
		b.markers = append(b.markers, it.flush)
		return
	}
	if b.records == nil {
		b.records, b.index = map[string]int64{}, map[[2]string]int{}
	}
	b.records[it.vm]++
	key := Key(it.ev)
	if key == "" {
		b.rows = append(b.rows, store.ActivityRow{VM: it.vm, Event: it.ev})
		return
	}
	// A flood of one lookup is one row to write, not one per lookup.
	ev := it.ev
	if ev.Count <= 0 {
		ev.Count = 1
	}
	if ev.Time.After(ev.Last) {
		ev.Last = ev.Time
	}
	if i, ok := b.index[[2]string{it.vm, key}]; ok {
		merged := &b.rows[i].Event
		merged.Count += ev.Count
		if ev.Last.After(merged.Last) {
			merged.Last = ev.Last
		}
		return
	}
	b.index[[2]string{it.vm, key}] = len(b.rows)
	b.rows = append(b.rows, store.ActivityRow{VM: it.vm, Key: key, Event: ev})
}

// write appends b with the events dropped since the last write, then
// releases its flush markers and empties it. A store error loses the
// batch, counted as dropped, and the writer goes on: the next batch may
// well be written.
func (r *Recorder) write(b *batch) {
	r.mu.Lock()
	dropped := r.dropped
	r.dropped = map[string]int64{}
	r.mu.Unlock()
	if len(b.rows) > 0 || len(dropped) > 0 {
		// Not the caller's context: the writer outlives every request,
		// and Close waits for what is queued to be written.
		err := r.st.AppendActivity(context.Background(), b.rows, r.max, dropped)
		if err != nil {
			r.log.Warn("activity record: write failed, events dropped", "events", len(b.rows), "err", err)
			r.mu.Lock()
			for vm, n := range dropped {
				r.dropped[vm] += n
			}
			for vm, n := range b.records {
				r.dropped[vm] += n
			}
			r.mu.Unlock()
		}
	}
	for _, m := range b.markers {
		close(m)
	}
	clear(b.index)
	clear(b.records)
	*b = batch{rows: b.rows[:0], index: b.index, records: b.records}
}
