package operation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Registry tracks running operations.
type Registry struct {
	base context.Context // operations outlive requests, not the daemon

	mu  sync.Mutex
	ops map[string]*Op // guarded by mu
	wg  sync.WaitGroup
}

// NewRegistry returns a registry whose operations are canceled when base
// is.
func NewRegistry(base context.Context) *Registry {
	return &Registry{base: base, ops: map[string]*Op{}}
}

// Op is one running operation.
type Op struct {
	id, kind, target string
	owner            uint32 // the uid of the caller that started it
	started          time.Time
	cancel           context.CancelFunc
	done             chan struct{}

	mu     sync.Mutex
	stage  string            // guarded by mu
	subs   map[*Sub]struct{} // guarded by mu
	result json.RawMessage   // guarded by mu; set before done closes
	err    error             // guarded by mu; set before done closes
}

// Start runs fn as a new operation for the caller of req (a request's
// context) and returns it with a watcher that sees every event from the
// first. fn's context carries req's values (who asked) but not its end:
// it is canceled by Cancel or when the daemon stops, never by a client
// going away.
func (r *Registry) Start(req context.Context, kind, target string, fn func(ctx context.Context, p Progress) (any, error)) (*Op, *Sub) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(req))
	stop := context.AfterFunc(r.base, cancel)
	op := &Op{
		id: newID(), kind: kind, target: target, owner: peer.UID(req), started: time.Now(),
		cancel: cancel, done: make(chan struct{}), subs: map[*Sub]struct{}{},
	}
	sub := op.Subscribe()
	r.mu.Lock()
	r.ops[op.id] = op
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer stop()
		defer cancel()
		res, err := fn(ctx, Func(op.publish))
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%s %s was canceled, and what it had done was undone: %w", kind, target, errdefs.ErrCanceled)
		}
		var raw json.RawMessage
		if err == nil {
			raw, err = json.Marshal(res)
		}
		op.mu.Lock()
		op.result, op.err = raw, err
		op.mu.Unlock()
		close(op.done)
		r.mu.Lock()
		delete(r.ops, op.id)
		r.mu.Unlock()
	}()
	return op, sub
}

// Wait blocks until every operation has finished.
func (r *Registry) Wait() { r.wg.Wait() }

// Cancel cancels the operation with the given ID, if ctx's caller
// started it (or is root): another's answers as one that does not exist.
func (r *Registry) Cancel(ctx context.Context, id string) error {
	r.mu.Lock()
	op := r.ops[id]
	r.mu.Unlock()
	if op == nil || !peer.Owns(ctx, op.owner) {
		return fmt.Errorf("operation %q: %w", id, errdefs.ErrNotFound)
	}
	op.cancel()
	return nil
}

// List describes the running operations ctx's caller may see (its own;
// root all), oldest first.
func (r *Registry) List(ctx context.Context) []api.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []api.Operation{}
	for _, op := range r.ops {
		if !peer.Owns(ctx, op.owner) {
			continue
		}
		op.mu.Lock()
		out = append(out, api.Operation{ID: op.id, Kind: op.kind, Target: op.target, Owner: op.owner, Stage: op.stage, StartedAt: op.started})
		op.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// ID returns the operation's ID.
func (op *Op) ID() string { return op.id }

// Done is closed when the operation has finished.
func (op *Op) Done() <-chan struct{} { return op.done }

// Result returns the outcome once Done is closed.
func (op *Op) Result() (json.RawMessage, error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.result, op.err
}

func (op *Op) publish(ev api.Event) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if ev.Stage != "" && ev.Message != "" {
		op.stage = ev.Stage
	}
	for s := range op.subs {
		s.push(ev)
	}
}

// Subscribe returns a watcher of the operation's progress events from now
// on. Call Close when done watching.
func (op *Op) Subscribe() *Sub {
	s := &Sub{op: op, notify: make(chan struct{}, 1)}
	op.mu.Lock()
	op.subs[s] = struct{}{}
	op.mu.Unlock()
	return s
}

// Sub is one watcher. Its queue never blocks the operation: consecutive
// byte counts of one stage are merged, so a slow reader sees fewer, newer
// counts but every stage line.
type Sub struct {
	op     *Op
	notify chan struct{}

	mu    sync.Mutex
	queue []api.Event // guarded by mu
}

func (s *Sub) push(ev api.Event) {
	s.mu.Lock()
	if n := len(s.queue); n > 0 && ev.Message == "" && s.queue[n-1].Message == "" && s.queue[n-1].Stage == ev.Stage {
		s.queue[n-1] = ev
	} else {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns queued events, waiting until there are some, the operation
// is done (ok=false after the last events), or ctx is done.
func (s *Sub) Next(ctx context.Context) (evs []api.Event, ok bool) {
	for {
		s.mu.Lock()
		evs, s.queue = s.queue, nil
		s.mu.Unlock()
		if len(evs) > 0 {
			return evs, true
		}
		select {
		case <-s.notify:
		case <-s.op.done:
			s.mu.Lock()
			evs, s.queue = s.queue, nil
			s.mu.Unlock()
			return evs, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

// Close stops watching.
func (s *Sub) Close() {
	s.op.mu.Lock()
	delete(s.op.subs, s)
	s.op.mu.Unlock()
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
