// Package guestdisk reads a disk a guest wrote, as a tar stream, without
// privileged code ever parsing it: the daemon opens the disk read-only
// and hands the descriptor to a sandboxed copy of its own binary (see
// internal/kit/sandbox), whose ext4 reader (internal/format/ext4read) writes the
// tree as tar to a pipe; the daemon checks every entry of that stream
// (internal/worktar's Check) before passing it on. Nothing is written to
// the host's file systems: no dump directory, no scratch space.
package guestdisk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/format/worktar"
	"github.com/banger-dev/banger/internal/kit/sandbox"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Entry is the sandboxed helper's name, after sandbox.Arg.
const Entry = "read-ext4"

// Reader reads guests' disks in a sandbox.
type Reader struct {
	// Sandbox is how the reading process runs (its uid, memory, time).
	Sandbox sandbox.Spec
}

// Stats say what a read left out.
type Stats = ext4read.Skipped

// Tar writes the tree of the ext4 file system in the file disk to w, as
// a tar stream every entry of which was checked against o's rules and
// bounds.
func (r Reader) Tar(ctx context.Context, disk string, o ext4read.Options, w io.Writer) (Stats, error) {
	f, err := os.Open(disk)
	if err != nil {
		return Stats{}, fmt.Errorf("open disk: %w", err)
	}
	opts, _ := json.Marshal(o)
	cmd, cancel := sandbox.Command(ctx, r.Sandbox, Entry, string(opts))
	defer cancel()
	cmd.ExtraFiles = []*os.File{f}
	var stderr worktar.Tail
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return Stats{}, err
	}
	err = cmd.Start()
	// The daemon holds the disk no longer than it takes to hand it over.
	f.Close()
	if err != nil {
		return Stats{}, fmt.Errorf("start the sandboxed disk reader: %w", err)
	}
	checkErr := worktar.Check(out, w, worktar.Rules{Entries: o.Entries, Bytes: o.Bytes, Root: o.Root})
	if checkErr != nil {
		cancel() // the reader may still be writing: it is told no more
	}
	io.Copy(io.Discard, out)
	waitErr := cmd.Wait()
	var st Stats
	msg := strings.TrimSpace(stderr.String())
	switch {
	case checkErr != nil && (errors.Is(checkErr, errdefs.ErrInvalid) || errors.Is(checkErr, worktar.ErrLimit)):
		// The stream broke a rule: that is what to say.
		return st, checkErr
	case ctx.Err() != nil:
		return st, ctx.Err()
	case waitErr != nil:
		// The reader refused the disk (its stream then ends short, which
		// is not the news): its own words say why.
		if msg == "" || cmd.ProcessState != nil && !cmd.ProcessState.Exited() {
			msg = fmt.Sprintf("the reader was ended (%v): over its %s or its memory", waitErr, r.Sandbox.Timeout)
		}
		return st, fmt.Errorf("read the disk: %s", msg)
	case checkErr != nil:
		return st, checkErr
	}
	json.Unmarshal([]byte(msg), &st)
	return st, worktar.End(w)
}

// Main is the sandboxed helper: disk on descriptor 3, options in args[0],
// the tar to standard output, an error or the stats to standard error.
func Main(args []string) int {
	if err := sandbox.Enter(); err != nil {
		fmt.Fprintf(os.Stderr, "enter the sandbox: %v\n", err)
		return 1
	}
	st, err := read(args)
	if err != nil {
		msg := err.Error()
		if len(msg) > 1000 {
			msg = msg[:1000]
		}
		fmt.Fprintln(os.Stderr, msg)
		return 1
	}
	b, _ := json.Marshal(st)
	os.Stderr.Write(b)
	return 0
}

func read(args []string) (Stats, error) {
	var o ext4read.Options
	if len(args) != 1 || json.Unmarshal([]byte(args[0]), &o) != nil {
		return Stats{}, fmt.Errorf("usage: %s %s OPTIONS-JSON", sandbox.Arg, Entry)
	}
	disk := os.NewFile(3, "disk")
	size, err := disk.Seek(0, io.SeekEnd)
	if err != nil {
		return Stats{}, fmt.Errorf("size of the disk: %w", err)
	}
	fs, err := ext4read.Open(disk, size)
	if err != nil {
		return Stats{}, err
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	st, err := fs.WriteTar(w, o)
	if err != nil {
		return st, err
	}
	return st, w.Flush()
}
