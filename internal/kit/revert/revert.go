// Package revert undoes half-made work: each step that makes something
// (a directory, a tap, a running VMM) adds how to undo it, and unless the
// whole succeeds, the undos run, newest first. One shape replaces the
// hand-written `defer func() { if err != nil { ... } }` blocks, which
// each undid a little differently and were easy to get wrong when a
// function gained a step.
package revert

// Reverter collects undos. The zero value is ready to use.
//
//	r := revert.New()
//	defer r.Fail()
//	... r.Add(func() { os.RemoveAll(dir) }) ...
//	r.Success()
type Reverter struct {
	undos []func()
	done  bool
}

// New returns an empty Reverter.
func New() *Reverter { return &Reverter{} }

// Add records how to undo the step just made.
func (r *Reverter) Add(undo func()) { r.undos = append(r.undos, undo) }

// Fail runs the undos, newest first, unless Success was called. It is
// meant to be deferred, and runs at most once.
func (r *Reverter) Fail() {
	if r.done {
		return
	}
	r.done = true
	for i := len(r.undos) - 1; i >= 0; i-- {
		r.undos[i]()
	}
	r.undos = nil
}

// Success keeps what was made: a later Fail does nothing.
func (r *Reverter) Success() { r.done = true }
