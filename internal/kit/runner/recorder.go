package runner

import (
	"context"
	"fmt"
	"sync"
)

// Recorder is a fake Runner for unit tests: it records every command and
// answers with the first matching Handler, or fails the call.
type Recorder struct {
	mu    sync.Mutex
	calls []Cmd // guarded by mu

	// Handle answers a command; nil means every command succeeds with no
	// output.
	Handle func(ctx context.Context, c Cmd) ([]byte, error)
	// Paths maps program names to what LookPath returns; a missing name is
	// not found.
	Paths map[string]string
}

var _ Runner = (*Recorder)(nil)

// Run implements Runner.
func (r *Recorder) Run(ctx context.Context, c Cmd) ([]byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	if r.Handle == nil {
		return nil, nil
	}
	return r.Handle(ctx, c)
}

// LookPath implements Runner.
func (r *Recorder) LookPath(name string) (string, error) {
	if p, ok := r.Paths[name]; ok {
		return p, nil
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// Calls returns the commands run so far, as text.
func (r *Recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.calls))
	for i, c := range r.calls {
		out[i] = c.String()
	}
	return out
}
