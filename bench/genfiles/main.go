// Command genfiles writes a many-file tree for the image benchmarks: text-
// like files of varied sizes, deterministic for a given seed, so that
// every pipeline compared gets the same input.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
)

func main() {
	dir := flag.String("dir", "", "directory to fill (created)")
	files := flag.Int("files", 40000, "how many files")
	total := flag.Int64("bytes", 512<<20, "total bytes across all files")
	flag.Parse()
	if *dir == "" {
		log.Fatal("genfiles: -dir is required")
	}
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"kernel", "banger", "image", "layer", "ext4", "inode", "block", "the", "of", "and", "microvm", "guest", "host", "socket", "daemon", "{", "}", "func", "return", "err", "nil", "\n"}
	avg := *total / int64(*files)
	for i := 0; i < *files; i++ {
		d := filepath.Join(*dir, fmt.Sprintf("d%03d", i%400), fmt.Sprintf("s%02d", (i/400)%25))
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
		f, err := os.Create(filepath.Join(d, fmt.Sprintf("f%06d.txt", i)))
		if err != nil {
			log.Fatal(err)
		}
		w := bufio.NewWriter(f)
		size := avg/2 + r.Int64N(avg+1)
		for n := int64(0); n < size; {
			word := words[r.IntN(len(words))]
			if r.IntN(4) == 0 {
				word = fmt.Sprintf("%x", r.Uint64())
			}
			k, _ := w.WriteString(word + " ")
			n += int64(k)
		}
		w.Flush()
		f.Close()
	}
}
