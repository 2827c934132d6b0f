// Command tar2ext4 is the peer pipeline's ext4 writer: hcsshim's tar2ext4
// library behind the same flags as hcsshim's own cmd/tar2ext4, which `go
// install` refuses because that module's go.mod has replace directives.
package main

import (
	"bufio"
	"flag"
	"io"
	"log"
	"os"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
)

func main() {
	input := flag.String("i", "", "input tar (default stdin)")
	output := flag.String("o", "", "output ext4 file")
	inline := flag.Bool("inline", false, "inline small files' data")
	flag.Parse()
	if *output == "" {
		log.Fatal("tar2ext4: -o is required")
	}
	var in io.Reader = os.Stdin
	if *input != "" {
		f, err := os.Open(*input)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		in = f
	}
	out, err := os.Create(*output)
	if err != nil {
		log.Fatal(err)
	}
	var opts []tar2ext4.Option
	if *inline {
		opts = append(opts, tar2ext4.InlineData)
	}
	if err := tar2ext4.ConvertTarToExt4(bufio.NewReaderSize(in, 1<<20), out, opts...); err != nil {
		log.Fatal(err)
	}
	if err := out.Close(); err != nil {
		log.Fatal(err)
	}
}
