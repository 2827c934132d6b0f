package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// QMP runs one command on qemu's monitor socket and returns its "return"
// value. Each call is its own connection: QMP is rarely used (start, stop)
// and a connection left open would be one more thing to re-attach.
func QMP(ctx context.Context, socket, command string) (json.RawMessage, error) {
	m, err := dialMonitor(ctx, socket)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	defer m.Close()
	ret, err := m.Exec(command, nil)
	if err != nil && command == "quit" {
		return nil, nil // qemu may close before it answers
	}
	return ret, err
}

// monitor is one QMP connection, for commands that belong together: a
// file descriptor handed over with getfd lives only as long as it.
type monitor struct {
	c *net.UnixConn
	r *bufio.Reader
}

// dialMonitor connects and negotiates capabilities. Its deadline is
// ctx's, or 10 s.
func dialMonitor(ctx context.Context, socket string) (*monitor, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	c.SetDeadline(deadline)
	m := &monitor{c: c.(*net.UnixConn), r: bufio.NewReader(c)}
	if _, err := m.read(); err != nil { // the greeting
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := m.Exec("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

func (m *monitor) Close() error { return m.c.Close() }

type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class, Desc string
	} `json:"error"`
	Event string `json:"event"`
}

// read returns the next reply, skipping asynchronous events.
func (m *monitor) read() (qmpReply, error) {
	for {
		line, err := m.r.ReadBytes('\n')
		if err != nil {
			return qmpReply{}, err
		}
		var rep qmpReply
		if err := json.Unmarshal(line, &rep); err != nil {
			return qmpReply{}, fmt.Errorf("bad QMP message %q: %w", line, err)
		}
		if rep.Event == "" {
			return rep, nil
		}
	}
}

// Exec runs command with args (nil for none).
func (m *monitor) Exec(command string, args any) (json.RawMessage, error) {
	return m.exec(command, args, nil)
}

// qmpCommand is one command of a sequence; fd, when set, is passed with
// it (SCM_RIGHTS), as getfd wants.
type qmpCommand struct {
	cmd  string
	args any
	fd   *os.File
}

// execAll runs commands in order, stopping at the first error.
func (m *monitor) execAll(cmds []qmpCommand) error {
	for _, c := range cmds {
		if _, err := m.exec(c.cmd, c.args, c.fd); err != nil {
			return err
		}
	}
	return nil
}

func (m *monitor) exec(command string, args any, f *os.File) (json.RawMessage, error) {
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if f != nil {
		_, _, err = m.c.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
	} else {
		_, err = m.c.Write(b)
	}
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	rep, err := m.read()
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	if rep.Error != nil {
		return nil, fmt.Errorf("qmp %s: %s: %s", command, rep.Error.Class, rep.Error.Desc)
	}
	return rep.Return, nil
}
