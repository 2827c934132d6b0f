package report

import (
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
)

func TestLine(t *testing.T) {
	zero, one := 0, 1
	uid := uint32(1000)
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		ev   api.ActivityEvent
		want string
	}{
		{api.ActivityEvent{Kind: api.ActCommand, Action: "exec", Argv: []string{"sh", "-c", "git status; echo 'x'"}, Exit: &zero, DurationMS: 1500, OutputBytes: 2048},
			`exec: sh -c 'git status; echo '\''x'\''' → exit 0, 1.5s, 2.0 KiB of output`},
		{api.ActivityEvent{Kind: api.ActCommand, Action: "ssh"}, "ssh: interactive shell, 0s, 0 B of output"},
		{api.ActivityEvent{Kind: api.ActCommand, Action: "run", Argv: []string{"false"}, Exit: &one, Detail: "x"}, "run: false → exit 1, 0s, 0 B of output: x"},
		{api.ActivityEvent{Kind: api.ActFile, Action: "write", Path: "/root/a", Bytes: 10}, "write /root/a (10 B)"},
		{api.ActivityEvent{Kind: api.ActFile, Action: "lend", Names: []string{"$GH_TOKEN", "~/.gitconfig"}}, "lend: $GH_TOKEN, ~/.gitconfig"},
		{api.ActivityEvent{Kind: api.ActLookup, Action: "refused", Host: "b.test", Count: 3, Last: at}, "b.test refused ×3 (last 03:00:00)"},
		{api.ActivityEvent{Kind: api.ActConnection, Action: "allowed", Addr: "a.test:443"}, "a.test:443 allowed"},
		{api.ActivityEvent{Kind: api.ActSecret, Action: "use", Secret: "gh", Method: "GET", Host: "api.github.com", URL: "/user"}, "gh use: GET api.github.com/user"},
		{api.ActivityEvent{Kind: api.ActLifecycle, Action: "stop", UID: &uid}, "stop"},
	} {
		if got := Line(c.ev); got != c.want {
			t.Errorf("Line(%+v) =\n  %q, want\n  %q", c.ev, got, c.want)
		}
	}
}

func TestSummaryCounts(t *testing.T) {
	zero, two := 0, 2
	rep := api.ActivityReport{VM: "web", Dropped: 5, Events: []api.ActivityEvent{
		{Kind: api.ActCommand, Exit: &zero}, {Kind: api.ActCommand, Exit: &two}, {Kind: api.ActCommand}, // no exit: it failed to run
		{Kind: api.ActLookup, Action: "allowed"}, {Kind: api.ActLookup, Action: "refused"},
		{Kind: api.ActSecret, Action: "use", Count: 7}, {Kind: api.ActSecret, Action: "attempt"},
		{Kind: api.ActFile, Action: "write"}, {Kind: api.ActFile, Action: "seed"},
	}}
	var b strings.Builder
	Summary(&b, rep)
	for _, want := range []string{"vm web: 9 events since its beginning (5 older ones dropped", "commands     3 run through banger, 2 failed",
		"lookups      1 names allowed, 1 refused", "secrets      7 uses, 1 attempts", "1 written into the VM, 0 read from it, 1 seeds"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

// TestGuestTextIsShownNotObeyed: what a guest sent (a URL path with an
// escape sequence, a file name with a newline, bytes that are not UTF-8)
// reaches the reader's terminal escaped, never as control characters.
func TestGuestTextIsShownNotObeyed(t *testing.T) {
	ev := api.ActivityEvent{Kind: api.ActSecret, Action: "attempt", Secret: "tok", Method: "GET", Host: "api.test",
		URL: "/\x1b[2J\x1b]0;owned\x07\xff\u202e", Detail: "line\nbreak"}
	got := Line(ev)
	want := `tok attempt: GET api.test/\x1b[2J\x1b]0;owned\x07\xff\u202e: line\x0abreak`
	if got != want {
		t.Errorf("Line =\n  %q, want\n  %q", got, want)
	}
	var b strings.Builder
	Changes(&b, api.RootChanges{Image: "img", Added: []api.FileChange{{Path: "root/\x1b[31mred\nx", Type: "file"}}})
	if strings.ContainsAny(b.String(), "\x1b") || !strings.Contains(b.String(), `+ /root/\x1b[31mred\x0ax (file`) {
		t.Errorf("Changes:\n%q", b.String())
	}
}
