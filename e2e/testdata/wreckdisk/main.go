// Command wreckdisk is what a hostile guest runs on its own disk, raw,
// for the end-to-end tests: it rewrites bytes of the block device behind
// the file system's back.
//
//	wreckdisk rename DEV OLD NEW    every OLD on DEV becomes NEW (same length)
//	wreckdisk randomize DEV NAME    every 4 KiB block holding NAME becomes random bytes
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "wreckdisk:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: wreckdisk rename DEV OLD NEW | randomize DEV NAME")
	}
	f, err := os.OpenFile(args[1], os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// In chunks: a guest's memory is small and its root disk is not.
	needle := []byte(args[2])
	hits := 0
	const chunk = 1 << 20
	buf := make([]byte, chunk+len(needle))
	for base := int64(0); ; base += chunk {
		n, err := f.ReadAt(buf, base)
		if err != nil && err != io.EOF {
			return err
		}
		for off := 0; off < min(n, chunk); {
			i := bytes.Index(buf[off:n], needle)
			if i < 0 || off+i >= chunk {
				break
			}
			at := base + int64(off+i)
			off += i + len(needle)
			hits++
			switch args[0] {
			case "rename":
				if len(args) != 4 || len(args[3]) != len(needle) {
					return fmt.Errorf("rename: NEW must be as long as OLD (%d bytes)", len(needle))
				}
				_, err = f.WriteAt([]byte(args[3]), at)
			case "randomize":
				blk := make([]byte, 4096)
				rand.Read(blk)
				_, err = f.WriteAt(blk, at&^4095)
				off = int(at&^4095 + 4096 - base)
			default:
				return fmt.Errorf("unknown verb %s", args[0])
			}
			if err != nil {
				return err
			}
		}
		if n < len(buf) {
			break
		}
	}
	if hits == 0 {
		return fmt.Errorf("%q is not on %s", args[2], args[1])
	}
	fmt.Printf("%d hits\n", hits)
	return f.Sync()
}
