// Command mcpexec times sandbox_exec of a command through `banger mcp`
// against `banger vm exec` of the same command on the same running VM,
// and against the floor both stand on (an SSH session on a connection
// kept open, no daemon, no MCP), interleaved, and prints the medians and
// what the MCP layer adds.
//
// With -vs SOCKET it compares instead two daemons (each with a running
// VM of that name): sandbox_exec through a session with each, interleaved
// (bench/activity.sh: recording on against off).
//
// Usage: mcpexec -banger PATH -vm NAME [-runs N] [-cmd true] [-vs SOCKET]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/wire/api"
)

func main() {
	banger := flag.String("banger", "banger", "the banger binary")
	vm := flag.String("vm", "", "a running VM")
	runs := flag.Int("runs", 30, "calls of each")
	command := flag.String("cmd", "true", "the command")
	vs := flag.String("vs", "", "another daemon's socket: compare sandbox_exec through it with $BANGER_SOCKET's")
	flag.Parse()
	run := run
	if *vs != "" {
		run = func(banger, vm, command string, runs int) error { return versus(banger, vm, command, runs, *vs) }
	}
	if err := run(*banger, *vm, *command, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "mcpexec:", err)
		os.Exit(1)
	}
}

func run(banger, vm, command string, runs int) error {
	ctx := context.Background()
	cs, call, err := session(ctx, banger, vm, command, "")
	if err != nil {
		return err
	}
	defer cs.Close()
	out, err := exec.Command(banger, "vm", "show", vm, "-o", "json").Output()
	if err != nil {
		return fmt.Errorf("vm show %s: %w", vm, err)
	}
	var v api.VM
	if err := json.Unmarshal(out, &v); err != nil {
		return err
	}
	keyPath, err := guestssh.KeyPath()
	if err != nil {
		return err
	}
	key, _, err := guestssh.LoadOrCreateKey(keyPath)
	if err != nil {
		return err
	}
	conn, err := guestssh.Dial(ctx, v, key)
	if err != nil {
		return err
	}
	defer conn.Close()
	bare := func() error {
		code, err := guestssh.Run(ctx, conn, "cd / && "+command, guestssh.IO{Stdout: io.Discard, Stderr: io.Discard})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d", code)
		}
		return err
	}
	cli := func() error {
		out, err := exec.Command(banger, "vm", "exec", vm, "--", "sh", "-c", command).CombinedOutput()
		if err != nil {
			return fmt.Errorf("vm exec: %v: %s", err, out)
		}
		return nil
	}
	// One of each first: the server's SSH connection, the guest's page
	// cache and TCG's translations are warm for both sides after it.
	if err := call(); err != nil {
		return err
	}
	if err := cli(); err != nil {
		return err
	}
	if err := bare(); err != nil {
		return err
	}
	var m, cl, b []time.Duration
	for i := 0; i < runs; i++ {
		for _, side := range []struct {
			f   func() error
			out *[]time.Duration
		}{{call, &m}, {cli, &cl}, {bare, &b}} {
			start := time.Now()
			if err := side.f(); err != nil {
				return err
			}
			*side.out = append(*side.out, time.Since(start))
		}
	}
	mm, cc, bb := median(m), median(cl), median(b)
	fmt.Printf("sandbox_exec %q (banger mcp, one session): median %s over %d calls\n", command, ms(mm), runs)
	fmt.Printf("banger vm exec %s -- %s:           median %s over %d runs\n", vm, command, ms(cc), runs)
	fmt.Printf("SSH session on a kept connection (floor):   median %s over %d runs\n", ms(bb), runs)
	fmt.Printf("sandbox_exec vs vm exec: %+.1f ms, %.2fx; the MCP layer over the floor: %+.1f ms (target: at most 20 ms added)\n",
		float64(mm-cc)/1e6, float64(mm)/float64(cc), float64(mm-bb)/1e6)
	return nil
}

// session starts `banger mcp --all` (the VM was made with the CLI, not
// by banger mcp) against socket ("": $BANGER_SOCKET's) and returns a call
// of sandbox_exec of command in vm through it.
func session(ctx context.Context, banger, vm, command, socket string) (*mcp.ClientSession, func() error, error) {
	cmd := exec.Command(banger, "mcp", "--all")
	if socket != "" {
		cmd.Env = append(os.Environ(), "BANGER_SOCKET="+socket)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpexec", Version: "v1"}, nil)
	cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("start banger mcp: %w", err)
	}
	return cs, func() error {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "sandbox_exec", Arguments: map[string]any{"vm": vm, "command": command, "workdir": "/"}})
		if err != nil {
			return err
		}
		if res.IsError {
			return fmt.Errorf("sandbox_exec: %v", res.Content)
		}
		return nil
	}, nil
}

// versus times sandbox_exec through $BANGER_SOCKET's daemon against
// through vs's, interleaved.
func versus(banger, vm, command string, runs int, vs string) error {
	ctx := context.Background()
	a, callA, err := session(ctx, banger, vm, command, "")
	if err != nil {
		return err
	}
	defer a.Close()
	b, callB, err := session(ctx, banger, vm, command, vs)
	if err != nil {
		return err
	}
	defer b.Close()
	for _, f := range []func() error{callA, callB} {
		if err := f(); err != nil {
			return err
		}
	}
	var ta, tb []time.Duration
	for i := 0; i < runs; i++ {
		for _, side := range []struct {
			f   func() error
			out *[]time.Duration
		}{{callA, &ta}, {callB, &tb}} {
			start := time.Now()
			if err := side.f(); err != nil {
				return err
			}
			*side.out = append(*side.out, time.Since(start))
		}
	}
	ma, mb := median(ta), median(tb)
	fmt.Printf("sandbox_exec %q: median %s through $BANGER_SOCKET's daemon, %s through %s's, over %d calls each: %.3fx\n", command, ms(ma), ms(mb), vs, runs, float64(ma)/float64(mb))
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
