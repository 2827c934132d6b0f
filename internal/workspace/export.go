package workspace

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/ext4"
	"github.com/banger-dev/banger/internal/guestproto"
	"github.com/banger-dev/banger/internal/runner"
	"github.com/banger-dev/banger/internal/scratch"
	"github.com/banger-dev/banger/internal/worktar"
)

// ExportDisk writes the content of a stopped VM's work disk to w as a tar
// stream, without booting the VM and without changing the disk: debugfs
// opens it read-only and dumps it into a private directory, which is then
// archived (links as links, never followed) and removed.
func (s *Service) ExportDisk(ctx context.Context, disk string, w io.Writer) error {
	tmp, err := os.MkdirTemp(s.dumpDir(ctx, disk), "banger-work-export-")
	if err != nil {
		return fmt.Errorf("export work disk: %w", err)
	}
	defer os.RemoveAll(tmp)
	// rdump keeps modes and owners; the dump's root is the disk's root.
	if _, err := s.d.Runner.Run(ctx, runner.Cmd{Name: "debugfs", Args: []string{"-R", "rdump / " + tmp, disk}}); err != nil {
		return fmt.Errorf("read work disk %s: %w", filepath.Base(disk), err)
	}
	return worktar.Write(ctx, tmp, w)
}

// dumpDir is where a disk is dumped for export: memory when twice what
// the disk holds fits there, else the state directory.
func (s *Service) dumpDir(ctx context.Context, disk string) string {
	used, err := ext4.UsedBytes(ctx, s.d.Runner, disk)
	if err != nil {
		return s.d.Staging
	}
	return scratch.Dir(2*used, s.d.Staging)
}

// ExportGuest writes /work of a running guest to w as a tar stream, from
// the guest agent's work-tar subsystem. A raw session channel is used:
// x/crypto/ssh's Session cannot wait for a subsystem's exit status.
func ExportGuest(ctx context.Context, c *ssh.Client, w io.Writer) error {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return fmt.Errorf("export work from the guest: %w", err)
	}
	defer ch.Close()
	status := make(chan int, 1)
	go func() {
		for r := range reqs {
			if r.Type == "exit-status" && len(r.Payload) >= 4 {
				status <- int(binary.BigEndian.Uint32(r.Payload))
			}
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
		close(status)
	}()
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{guestproto.WorkTarSubsystem}))
	if err != nil || !ok {
		return fmt.Errorf("the guest agent does not export /work (an older agent? restart the VM): %v", err)
	}
	var stderr limitedBuffer
	go io.Copy(&stderr, ch.Stderr())
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, ch)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("export work from the guest: %w", err)
	}
	code, got := <-status
	if !got || code != 0 {
		return fmt.Errorf("export work from the guest: the agent failed: %s", bytes.TrimSpace(stderr.b))
	}
	return nil
}

type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b) < 4096 {
		l.b = append(l.b, p[:min(len(p), 4096-len(l.b))]...)
	}
	return len(p), nil
}
