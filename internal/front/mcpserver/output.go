package mcpserver

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

// capture keeps a bounded view of a stream of any length: its first and
// last limit/2 bytes (where a command says what it does, and how it
// ended), and how many bytes went unseen between them. Memory stays
// bounded whatever the command prints.
type capture struct {
	mu    sync.Mutex
	limit int
	head  []byte
	tail  []byte // a ring of limit-limit/2 bytes once head is full
	next  int    // where the ring writes next
	full  bool   // the ring has wrapped
	total int64
	last  []byte // the last line seen, for progress messages
}

func newCapture(limit int) *capture { return &capture{limit: limit} }

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	c.total += int64(n)
	c.noteLine(p)
	headMax := c.limit / 2
	if room := headMax - len(c.head); room > 0 {
		take := min(room, len(p))
		c.head = append(c.head, p[:take]...)
		p = p[take:]
	}
	tailMax := c.limit - headMax
	if tailMax == 0 || len(p) == 0 {
		return n, nil
	}
	if len(p) >= tailMax {
		c.tail = append(c.tail[:0], p[len(p)-tailMax:]...)
		c.next, c.full = 0, true
		return n, nil
	}
	for len(p) > 0 {
		if !c.full && len(c.tail) < tailMax {
			take := min(tailMax-len(c.tail), len(p))
			c.tail = append(c.tail, p[:take]...)
			p = p[take:]
			if len(c.tail) == tailMax {
				c.full, c.next = true, 0
			}
			continue
		}
		k := copy(c.tail[c.next:], p)
		p = p[k:]
		c.next = (c.next + k) % tailMax
	}
	return n, nil
}

// noteLine remembers the last complete or partial line of output.
func (c *capture) noteLine(p []byte) {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	if len(p) == 0 {
		return
	}
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '\n' || p[i] == '\r' {
			p = p[i+1:]
			break
		}
	}
	if len(p) > 200 {
		p = p[:200]
	}
	c.last = append(c.last[:0], p...)
}

// Total is how many bytes were written.
func (c *capture) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// LastLine is the last line written, cut to 200 bytes.
func (c *capture) LastLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.last)
}

// String returns what was kept, with a note where bytes were left out,
// and how many were.
func (c *capture) String() (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail := c.tail
	if c.full {
		tail = append(append([]byte{}, c.tail[c.next:]...), c.tail[:c.next]...)
	}
	omitted := c.total - int64(len(c.head)) - int64(len(tail))
	if omitted <= 0 {
		return string(c.head) + string(tail), 0
	}
	// Cut at characters, not inside one: the dropped bytes are counted.
	head := trimPartialRune(c.head)
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	omitted = c.total - int64(len(head)) - int64(len(tail))
	return fmt.Sprintf("%s\n[... truncated, %d bytes more ...]\n%s", head, omitted, tail), omitted
}
