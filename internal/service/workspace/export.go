package workspace

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/format/worktar"
	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// ExportDisk writes the content of a stopped VM's work disk to w as a tar
// stream, without booting the VM and without changing the disk. The disk
// is the guest's writing, so it is parsed only in a sandboxed reader (see
// internal/format/guestdisk), never by the daemon, and what the reader sends is
// checked entry by entry on the way through: nothing is written on the
// host.
func (s *Service) ExportDisk(ctx context.Context, disk string, w io.Writer) error {
	fi, err := os.Stat(disk)
	if err != nil {
		return fmt.Errorf("export work disk: %w", err)
	}
	l := s.pullLimits(fi.Size())
	st, err := s.d.Disks.Tar(ctx, disk, ext4read.Options{Limits: ext4read.Limits{Entries: l.Entries, Bytes: l.Bytes}}, w)
	if err != nil {
		return fmt.Errorf("read work disk %s: %w", filepath.Base(disk), err)
	}
	if st.Special > 0 {
		s.d.Log.Warn("work disk holds device nodes, FIFOs or sockets: left out", "disk", disk, "count", st.Special)
	}
	return nil
}

// pullLimits bounds a read of a work disk of diskBytes: a tree cannot
// honestly hold more than its disk, whatever its sparse files claim.
func (s *Service) pullLimits(diskBytes int64) worktar.Rules {
	b := s.d.MaxPullBytes
	if diskBytes > 0 && diskBytes < b {
		b = diskBytes
	}
	return worktar.Rules{Entries: s.d.MaxPullEntries, Bytes: b}
}

// ExportGuest writes /work of a running guest to w as a tar stream, from
// the guest agent's work-tar subsystem, every entry checked as a stopped
// VM's are (the agent is the guest's to replace). A raw session channel
// is used: x/crypto/ssh's Session cannot wait for a subsystem's exit
// status.
func (s *Service) ExportGuest(ctx context.Context, c *ssh.Client, diskBytes int64, w io.Writer) error {
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
	// stderr is read only once its copy is done: the exit status can
	// arrive before the copy has taken in the message that explains it.
	var stderr worktar.Tail
	stderrDone := make(chan struct{})
	go func() { io.Copy(&stderr, ch.Stderr()); close(stderrDone) }()
	done := make(chan error, 1)
	go func() {
		err := worktar.Check(ch, w, s.pullLimits(diskBytes))
		if err != nil {
			ch.Close()
		}
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
		select {
		case <-stderrDone:
		case <-ctx.Done():
			return ctx.Err()
		}
		return fmt.Errorf("export work from the guest: the agent failed: %s", strings.TrimSpace(stderr.String()))
	}
	return worktar.End(w)
}
