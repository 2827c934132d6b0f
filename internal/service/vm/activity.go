package vm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Activity is the VMs' activity records (see service/activity).
type Activity interface {
	Record(vm string, ev api.ActivityEvent)
	Report(ctx context.Context, vm string, since time.Time) (api.ActivityReport, error)
	Remove(ctx context.Context, vm string) error
}

// record adds what a caller had done to vm's record, with the caller's
// uid: the daemon's own doings (a restart's recovery) have none.
func (s *Service) record(ctx context.Context, vm string, ev api.ActivityEvent) {
	if s.d.Activity == nil {
		return
	}
	if cred, ok := peer.Of(ctx); ok {
		uid := cred.Uid
		ev.UID = &uid
	} else if ev.Via == "" {
		ev.Via = api.ViaDaemon
	}
	s.d.Activity.Record(vm, ev)
}

// Note adds to vm's record what ctx's caller had done to it (for the
// services beside this one: work, lending, secrets).
func (s *Service) Note(ctx context.Context, vm string, ev api.ActivityEvent) { s.record(ctx, vm, ev) }

// lifecycle records an event of vm's life.
func (s *Service) lifecycle(ctx context.Context, vm, action, format string, args ...any) {
	s.record(ctx, vm, api.ActivityEvent{Kind: api.ActLifecycle, Action: action, Detail: fmt.Sprintf(format, args...)})
}

// Activity returns the caller's VM's record from since on; a stopped VM
// has one too, kept until it is removed.
func (s *Service) Activity(ctx context.Context, name string, since time.Time) (api.ActivityReport, error) {
	v, err := s.get(ctx, name)
	if err != nil {
		return api.ActivityReport{}, err
	}
	if s.d.Activity == nil {
		return api.ActivityReport{VM: v.Name, Since: since, Counts: map[string]int64{}, Events: []api.ActivityEvent{}}, nil
	}
	rep, err := s.d.Activity.Report(ctx, v.Name, since)
	if err != nil {
		return rep, fmt.Errorf("activity of vm %s: %w", v.Name, err)
	}
	// In the order things began: a command is recorded when it ends,
	// after what the guest did while it ran.
	slices.SortStableFunc(rep.Events, func(a, b api.ActivityEvent) int { return a.Time.Compare(b.Time) })
	return rep, nil
}

// Bounds of what a client may report in one request.
const (
	maxReported     = 64
	maxReportedArgv = 256
	maxReportedText = 4096
)

// RecordActivity adds to the caller's VM's record what a client did in
// it: commands and files only (what the daemon sees itself it records
// itself), stamped with the caller's uid. The guest cannot reach this:
// it is the daemon's socket, not the guest's.
func (s *Service) RecordActivity(ctx context.Context, name string, req api.ActivityRequest) error {
	v, err := s.get(ctx, name)
	if err != nil {
		return err
	}
	if len(req.Events) > maxReported {
		return fmt.Errorf("%d events in one request, at most %d: %w", len(req.Events), maxReported, errdefs.ErrInvalid)
	}
	evs := make([]api.ActivityEvent, 0, len(req.Events))
	for i, ev := range req.Events {
		if err := checkReported(&ev, v.CreatedAt); err != nil {
			return fmt.Errorf("event %d: %w: %w", i, err, errdefs.ErrInvalid)
		}
		evs = append(evs, ev)
	}
	for _, ev := range evs {
		s.record(ctx, v.Name, ev)
	}
	return nil
}

// checkReported checks a reported event and keeps only what its kind
// has: a client reports commands and files, not the guest's lookups or
// the VM's life.
func checkReported(ev *api.ActivityEvent, created time.Time) error {
	actions := map[string][]string{api.ActCommand: {"run", "exec", "ssh"}, api.ActFile: {"write", "read"}}
	allowed, ok := actions[ev.Kind]
	if !ok {
		return fmt.Errorf("kind %q: a client reports %q or %q", ev.Kind, api.ActCommand, api.ActFile)
	}
	if !slices.Contains(allowed, ev.Action) {
		return fmt.Errorf("%s action %q: want one of %s", ev.Kind, ev.Action, strings.Join(allowed, ", "))
	}
	if ev.Via != api.ViaCLI && ev.Via != api.ViaMCP {
		return fmt.Errorf("via %q: want %q or %q", ev.Via, api.ViaCLI, api.ViaMCP)
	}
	if len(ev.Argv) > maxReportedArgv {
		return fmt.Errorf("%d arguments, at most %d", len(ev.Argv), maxReportedArgv)
	}
	for _, s := range append([]string{ev.Dir, ev.Path}, ev.Argv...) {
		if len(s) > maxReportedText {
			return fmt.Errorf("a string of %d bytes, at most %d", len(s), maxReportedText)
		}
	}
	if ev.DurationMS < 0 || ev.OutputBytes < 0 || ev.Bytes < 0 {
		return fmt.Errorf("negative duration or size")
	}
	// The time is the client's; one outside the VM's life is the
	// daemon's now.
	if now := time.Now(); ev.Time.Before(created) || ev.Time.After(now.Add(time.Minute)) {
		ev.Time = now
	}
	// What the daemon stamps, or what other kinds carry, is not the
	// client's to say.
	*ev = api.ActivityEvent{Time: ev.Time, Kind: ev.Kind, Action: ev.Action, Via: ev.Via,
		Argv: ev.Argv, Dir: ev.Dir, Exit: ev.Exit, DurationMS: ev.DurationMS, OutputBytes: ev.OutputBytes, TTY: ev.TTY,
		Path: ev.Path, Bytes: ev.Bytes, Detail: ev.Detail}
	return nil
}

// recordCreate begins a new VM's record: what it was made of, and the
// seed banger wrote into its /work.
func (s *Service) recordCreate(ctx context.Context, v store.VM) {
	if s.d.Activity != nil {
		// What a VM of this name left (a lookup answered as it was
		// removed) is not this one's.
		if err := s.d.Activity.Remove(ctx, v.Name); err != nil {
			s.d.Log.Warn("clear a new vm's activity record", "vm", v.Name, "err", err)
		}
	}
	what := fmt.Sprintf("image %s, kernel %s, %d CPU, %d MiB, network %s", v.Image, v.Kernel, v.CPUs, v.MemoryMB, orDefault(v.Network, api.NetUser))
	if v.Egress != "" {
		what += ", egress " + v.Egress
	}
	if v.Init != "" {
		what += ", init " + v.Init
	}
	if v.Snapshot != "" {
		what = "forked from snapshot " + v.Snapshot + ": " + what
	}
	s.record(ctx, v.Name, api.ActivityEvent{Kind: api.ActLifecycle, Action: "create", Via: madeVia(v), Detail: what})
	if w := v.Work; w != nil && v.Snapshot == "" {
		s.record(ctx, v.Name, api.ActivityEvent{Kind: api.ActFile, Action: "seed", Via: madeVia(v), Path: "/work", Bytes: w.Bytes,
			Detail: fmt.Sprintf("seeded from %s: %d entries", w.Source, w.Files)})
	}
}

// madeVia is the tool that made v, for its record.
func madeVia(v store.VM) string {
	if v.MadeBy != nil && v.MadeBy.Tool == "mcp" {
		return api.ViaMCP
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
