package clikit

import (
	"bytes"
	"testing"

	"github.com/banger-dev/banger/internal/wire/api"
)

func TestPlainProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
	p.Event(api.Event{Type: api.EventOperation, Operation: "abc", Message: "kernel pull k"})
	p.Event(api.Event{Type: api.EventProgress, Stage: "download", Message: "downloading x"})
	for done := int64(0); done <= 1000; done += 10 {
		p.Event(api.Event{Type: api.EventProgress, Stage: "download", Done: done << 20, Total: 1000 << 20})
	}
	// A tiny file's byte counts would be noise in a log.
	p.Event(api.Event{Type: api.EventProgress, Stage: "unpack", Done: 0, Total: 1400})
	p.Event(api.Event{Type: api.EventProgress, Stage: "unpack", Done: 1400, Total: 1400})
	p.Event(api.Event{Type: api.EventProgress, Stage: "publish", Message: "publishing k"})
	p.Done()
	want := `operation abc: kernel pull k
==> downloading x
    download: 0 B of 1000 MiB (0%)
    download: 250 MiB of 1000 MiB (25%)
    download: 500 MiB of 1000 MiB (50%)
    download: 750 MiB of 1000 MiB (75%)
    download: 1000 MiB of 1000 MiB (100%)
==> publishing k
`
	if buf.String() != want {
		t.Fatalf("plain progress:\n%s\nwant:\n%s", buf.String(), want)
	}
}
