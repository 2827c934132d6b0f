package clikit

import (
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/banger-dev/banger/internal/wire/api"
)

// Progress renders operation events: on a terminal, a line per stage and
// a byte bar for downloads; otherwise plain lines, with byte counts at
// most every quarter, so logs stay readable.
type Progress struct {
	w       io.Writer
	tty     bool
	bar     *progressbar.ProgressBar
	barFor  string
	lastPct map[string]int64
}

// Progress renders events on stderr.
func (a *App) Progress() *Progress { return NewProgress(a.Stderr) }

// NewProgress renders events on w, as a terminal when w is one.
func NewProgress(w io.Writer) *Progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &Progress{w: w, tty: tty, lastPct: map[string]int64{}}
}

// Event renders ev; its type fits a client call's event callback.
func (p *Progress) Event(ev api.Event) {
	switch {
	case ev.Type == api.EventOperation:
		if !p.tty {
			fmt.Fprintf(p.w, "operation %s: %s\n", ev.Operation, ev.Message)
		}
	case ev.Message != "":
		p.finishBar()
		fmt.Fprintf(p.w, "==> %s\n", ev.Message)
	case ev.Done > 0 || ev.Total > 0:
		if p.tty {
			p.bytesTTY(ev)
		} else {
			p.bytesPlain(ev)
		}
	}
}

func (p *Progress) bytesTTY(ev api.Event) {
	if p.bar == nil || p.barFor != ev.Stage {
		p.finishBar()
		total := ev.Total
		if total <= 0 {
			total = -1
		}
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("    "+ev.Stage),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
		)
		p.barFor = ev.Stage
	}
	p.bar.Set64(ev.Done)
}

// minPlainBytes: below this, byte counts in a log are noise (a 1.4 KiB
// metapackage needs no "0 B of 1.4 KiB" line); the stage line says enough.
const minPlainBytes = 1 << 20

func (p *Progress) bytesPlain(ev api.Event) {
	if ev.Total < minPlainBytes {
		return
	}
	pct := ev.Done * 100 / ev.Total
	step := pct / 25 * 25
	last, seen := p.lastPct[ev.Stage]
	if !seen {
		last = -1
	}
	if step > last {
		p.lastPct[ev.Stage] = step
		fmt.Fprintf(p.w, "    %s: %s of %s (%d%%)\n", ev.Stage, HumanSize(ev.Done), HumanSize(ev.Total), pct)
	}
}

func (p *Progress) finishBar() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
		p.barFor = ""
	}
}

// Done ends the rendering, and a byte bar with it, when the operation ends.
func (p *Progress) Done() { p.finishBar() }
