package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMP runs one command on qemu's monitor socket and returns its "return"
// value. Each call is its own connection: QMP is rarely used (start, stop)
// and a connection left open would be one more thing to re-attach.
func QMP(ctx context.Context, socket, command string) (json.RawMessage, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	c.SetDeadline(deadline)
	r := bufio.NewReader(c)
	type reply struct {
		QMP    json.RawMessage `json:"QMP"`
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class, Desc string
		} `json:"error"`
		Event string `json:"event"`
	}
	read := func() (reply, error) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return reply{}, err
			}
			var m reply
			if err := json.Unmarshal(line, &m); err != nil {
				return reply{}, fmt.Errorf("bad QMP message %q: %w", line, err)
			}
			if m.Event == "" {
				return m, nil
			}
		}
	}
	if _, err := read(); err != nil { // the greeting
		return nil, fmt.Errorf("qmp %s: greeting: %w", command, err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(c, "{\"execute\":%q}\n", cmd); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		m, err := read()
		if err != nil {
			if cmd == "quit" {
				return nil, nil // qemu may close before it answers
			}
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		if cmd == command {
			return m.Return, nil
		}
	}
	return nil, nil
}
