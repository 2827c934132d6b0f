package api

import (
	"fmt"
	"time"
)

// Kinds of activity events: what a VM's record holds.
const (
	// ActCommand is a command or session run through banger (vm run, vm
	// exec, vm ssh, MCP sandbox_exec).
	ActCommand = "command"
	// ActFile is a file banger wrote into the VM or read from it (vm cp,
	// sandbox_write_file, the seed of /work, lent files and secrets by
	// name).
	ActFile = "file"
	// ActLookup is a name the guest looked up, allowed or refused by its
	// egress policy; one event per name and verdict, with a count.
	ActLookup = "lookup"
	// ActConnection is a connection the guest made through the host,
	// allowed or refused; one event per address, port and verdict.
	ActConnection = "connection"
	// ActSecret is a secret's use (its value added for a bound host) or
	// an attempt (its placeholder sent to a host it is not bound to).
	ActSecret = "secret"
	// ActLifecycle is what happened to the VM: create, start, stop,
	// snapshot, fork, pull, lend.
	ActLifecycle = "lifecycle"
)

// Who did what: the tool a caller used, or the guest itself.
const (
	ViaCLI    = "cli"
	ViaMCP    = "mcp"
	ViaGuest  = "guest"
	ViaDaemon = "daemon"
)

// ActivityEvent is one entry of a VM's record. The daemon writes every
// one: those it saw itself (lifecycle, lookups, connections, secrets),
// and those banger's clients report of what they did in the guest
// (commands, files), stamped with the caller's uid. The guest has no way
// to add, change or remove one.
type ActivityEvent struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Action is what happened, by kind: command "run", "exec", "ssh";
	// file "write", "read", "seed", "lend"; lookup and connection
	// "allowed", "refused"; secret "use", "attempt"; lifecycle "create",
	// "start", "stop", "snapshot", "fork", "pull". File "secrets" gives
	// placeholders (names only).
	Action string `json:"action"`
	// UID is the caller's uid for what a caller asked for; nil for what
	// the guest did by itself.
	UID *uint32 `json:"uid,omitempty"`
	// Via is the tool: ViaCLI, ViaMCP, ViaGuest, ViaDaemon.
	Via string `json:"via,omitempty"`

	// A command: its argv (empty for an interactive shell), the guest
	// directory it ran in, its exit status, how long it took and how many
	// bytes of output it wrote.
	Argv        []string `json:"argv,omitempty"`
	Dir         string   `json:"dir,omitempty"`
	Exit        *int     `json:"exit,omitempty"`
	DurationMS  int64    `json:"duration_ms,omitempty"`
	OutputBytes int64    `json:"output_bytes,omitempty"`
	TTY         bool     `json:"tty,omitempty"`

	// A file: its guest path and size; Names for what was lent or given
	// (paths, variables and secrets by name, never a value).
	Path  string   `json:"path,omitempty"`
	Bytes int64    `json:"bytes,omitempty"`
	Names []string `json:"names,omitempty"`

	// A lookup's name, a secret's host; a connection's address
	// ("ADDR:PORT"); a secret's name and the request it went with.
	Host   string `json:"host,omitempty"`
	Addr   string `json:"addr,omitempty"`
	Secret string `json:"secret,omitempty"`
	Method string `json:"method,omitempty"`
	URL    string `json:"url,omitempty"`

	// Count is how many times a counted event (lookup, connection,
	// secret) happened, from Time to Last.
	Count int64     `json:"count,omitempty"`
	Last  time.Time `json:"last,omitzero"`
	// Detail says more, for people.
	Detail string `json:"detail,omitempty"`
}

// ActivityReport is a VM's record (GET /v1/vms/{name}/activity).
type ActivityReport struct {
	VM string `json:"vm"`
	// Since is where the report starts (zero: the VM's beginning).
	Since time.Time `json:"since,omitzero"`
	// Counts are the events of each kind in the report, counted events
	// by their counts.
	Counts map[string]int64 `json:"counts"`
	// Dropped is how many events the record let go of, the oldest first,
	// to stay within its bound.
	Dropped int64           `json:"dropped"`
	Events  []ActivityEvent `json:"events"`
}

// ActivityRequest is what a client reports of what it did in a VM (POST
// /v1/vms/{name}/activity): commands and files only.
type ActivityRequest struct {
	Events []ActivityEvent `json:"events"`
}

// ParseSince reads a report's start: an RFC 3339 time, or a duration
// back from now ("90m", "2h").
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-12-07T10:00:00Z) or a duration back from now (90m, 2h)", s)
	}
	return now.Add(-d), nil
}

// RootChanges is how a stopped VM's root disk differs from its image
// (GET /v1/vms/{name}/changes): files added, changed and removed outside
// /work, read in the sandbox as any disk a guest wrote is.
type RootChanges struct {
	VM    string `json:"vm"`
	Image string `json:"image"`
	// Added, Changed and Removed are paths (no leading slash), at most
	// MaxRootChanges of each; Truncated says some were left out.
	Added     []FileChange `json:"added"`
	Changed   []FileChange `json:"changed"`
	Removed   []FileChange `json:"removed"`
	Truncated bool         `json:"truncated,omitempty"`
}

// FileChange is one path that differs: its type ("file", "dir",
// "symlink", "other") and size in the VM (Size) and in the image (Was).
type FileChange struct {
	Path string `json:"path"`
	Type string `json:"type"`
	Size int64  `json:"size"`
	Was  int64  `json:"was,omitempty"`
}

// MaxRootChanges bounds each list of a RootChanges.
const MaxRootChanges = 1000
