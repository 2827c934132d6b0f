// Package report writes a VM's activity record for people: the counts
// first, then the timeline. `vm report`, the git note `vm pull` adds and
// MCP's sandbox_report all say it the same way.
package report

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"

	"github.com/banger-dev/banger/internal/wire/api"
)

// Tally is what a record holds, counted the way a reviewer asks.
type Tally struct {
	Commands, Failed         int
	Written, Read            int
	Lookups, LookupsRefused  int
	Conns, ConnsRefused      int
	SecretUses, SecretTries  int64
	Lifecycle, Seeds, Lended int
}

// Count tallies rep's events.
func Count(rep api.ActivityReport) Tally {
	var t Tally
	for _, e := range rep.Events {
		switch e.Kind {
		case api.ActCommand:
			t.Commands++
			if e.Exit == nil || *e.Exit != 0 {
				t.Failed++
			}
		case api.ActFile:
			switch e.Action {
			case "write":
				t.Written++
			case "read":
				t.Read++
			case "seed":
				t.Seeds++
			default:
				t.Lended++
			}
		case api.ActLookup:
			if e.Action == "refused" {
				t.LookupsRefused++
			} else {
				t.Lookups++
			}
		case api.ActConnection:
			if e.Action == "refused" {
				t.ConnsRefused++
			} else {
				t.Conns++
			}
		case api.ActSecret:
			if e.Action == "use" {
				t.SecretUses += max(e.Count, 1)
			} else {
				t.SecretTries += max(e.Count, 1)
			}
		case api.ActLifecycle:
			t.Lifecycle++
		}
	}
	return t
}

// Summary is the counts, a few lines.
func Summary(w io.Writer, rep api.ActivityReport) {
	t := Count(rep)
	since := "its beginning"
	if !rep.Since.IsZero() {
		since = rep.Since.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "vm %s: %d events since %s", rep.VM, len(rep.Events), since)
	if rep.Dropped > 0 {
		fmt.Fprintf(w, " (%d older ones dropped to stay within the record's bound)", rep.Dropped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  commands     %d run through banger, %d failed\n", t.Commands, t.Failed)
	fmt.Fprintf(w, "  files        %d written into the VM, %d read from it, %d seeds, %d lends or secrets (names only)\n", t.Written, t.Read, t.Seeds, t.Lended)
	fmt.Fprintf(w, "  lookups      %d names allowed, %d refused\n", t.Lookups, t.LookupsRefused)
	fmt.Fprintf(w, "  connections  %d allowed, %d refused (through banger's proxy)\n", t.Conns, t.ConnsRefused)
	fmt.Fprintf(w, "  secrets      %d uses, %d attempts to send a placeholder elsewhere\n", t.SecretUses, t.SecretTries)
	fmt.Fprintf(w, "  lifecycle    %d events\n", t.Lifecycle)
}

// Timeline is one line per event, oldest first, times in loc.
func Timeline(w io.Writer, rep api.ActivityReport, loc *time.Location) {
	for _, e := range rep.Events {
		fmt.Fprintf(w, "%s  %-10s %-14s %s\n", e.Time.In(loc).Format("2006-01-02 15:04:05"), e.Kind, who(e), Line(e))
	}
}

// who says who made an event happen: a caller's uid and tool, the guest,
// or the daemon.
func who(e api.ActivityEvent) string {
	if e.UID != nil {
		s := fmt.Sprintf("uid %d", *e.UID)
		if e.Via != "" {
			s += " " + e.Via
		}
		return s
	}
	if e.Via != "" {
		return e.Via
	}
	return "-"
}

// Line says what one event was.
func Line(e api.ActivityEvent) string {
	var s string
	switch e.Kind {
	case api.ActCommand:
		cmd := "interactive shell"
		if len(e.Argv) > 0 {
			cmd = shellWords(e.Argv)
		}
		s = fmt.Sprintf("%s: %s", e.Action, cmd)
		if e.Exit != nil {
			s += fmt.Sprintf(" → exit %d", *e.Exit)
		}
		s += fmt.Sprintf(", %s, %s of output", (time.Duration(e.DurationMS) * time.Millisecond).String(), humanize.IBytes(uint64(e.OutputBytes)))
	case api.ActFile:
		switch {
		case len(e.Names) > 0:
			s = fmt.Sprintf("%s: %s", e.Action, strings.Join(e.Names, ", "))
		default:
			s = fmt.Sprintf("%s %s (%s)", e.Action, e.Path, humanize.IBytes(uint64(e.Bytes)))
		}
	case api.ActLookup:
		s = fmt.Sprintf("%s %s", e.Host, e.Action)
	case api.ActConnection:
		s = fmt.Sprintf("%s %s", e.Addr, e.Action)
	case api.ActSecret:
		s = fmt.Sprintf("%s %s: %s %s%s", e.Secret, e.Action, e.Method, e.Host, e.URL)
	default:
		s = e.Action
	}
	if e.Count > 1 {
		s += fmt.Sprintf(" ×%d (last %s)", e.Count, e.Last.UTC().Format("15:04:05"))
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return printable(s)
}

// printable shows s with its control characters and invalid bytes
// escaped: a record holds what a guest sent (a URL path, a host, a file
// name), and a terminal, or git log showing a note, must not take an
// escape sequence in it for one.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
		i += size
	}
	return b.String()
}

// shellWords joins argv as a shell would read it back.
func shellWords(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	s := strings.Join(out, " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// listed bounds the paths Changes prints of each kind.
const listed = 50

// Changes says how a VM's root disk differs from its image.
func Changes(w io.Writer, c api.RootChanges) {
	fmt.Fprintf(w, "root disk outside /work, against image %s: %d added, %d changed, %d removed", c.Image, len(c.Added), len(c.Changed), len(c.Removed))
	if c.Truncated {
		fmt.Fprintf(w, " (each list stops at %d)", api.MaxRootChanges)
	}
	fmt.Fprintln(w)
	for _, l := range []struct {
		mark string
		list []api.FileChange
	}{{"+", c.Added}, {"~", c.Changed}, {"-", c.Removed}} {
		for i, f := range l.list {
			if i == listed {
				fmt.Fprintf(w, "  %s ... %d more\n", l.mark, len(l.list)-listed)
				break
			}
			size := f.Size
			if l.mark == "-" {
				size = f.Was
			}
			fmt.Fprintf(w, "  %s /%s (%s, %s)\n", l.mark, printable(f.Path), f.Type, humanize.IBytes(uint64(max(size, 0))))
		}
	}
}
