// Package operation runs long work in the daemon: each operation has an
// ID, streams progress events to any number of watchers, can be canceled,
// and does not depend on the client that started it staying connected.
package operation

import (
	"fmt"

	"github.com/banger-dev/banger/internal/wire/api"
)

// Progress receives what a long operation is doing. Services take it as a
// parameter; they never know who is watching.
type Progress interface {
	// Stage starts a new step, shown to users as one line.
	Stage(stage, format string, args ...any)
	// Bytes reports bytes done of total (0 when unknown) within a stage.
	Bytes(stage string, done, total int64)
}

// Discard is a Progress that drops everything.
var Discard Progress = discard{}

type discard struct{}

func (discard) Stage(string, string, ...any) {}
func (discard) Bytes(string, int64, int64)   {}

// Func adapts a function receiving events to Progress.
type Func func(api.Event)

// Stage implements Progress.
func (f Func) Stage(stage, format string, args ...any) {
	f(api.Event{Type: api.EventProgress, Stage: stage, Message: fmt.Sprintf(format, args...)})
}

// Bytes implements Progress.
func (f Func) Bytes(stage string, done, total int64) {
	f(api.Event{Type: api.EventProgress, Stage: stage, Done: done, Total: total})
}
