package client

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
)

// SendCounted runs send with body, reporting the bytes send has read to
// onEvent as progress of stage every 200 ms. Counts are capped at total,
// which is what the user knows: a tar stream carries headers too.
func SendCounted(onEvent func(api.Event), stage string, total int64, body io.Reader, send func(io.Reader) error) error {
	var sent atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				onEvent(api.Event{Stage: stage, Done: min(sent.Load(), total), Total: total})
			}
		}
	}()
	err := send(&countReader{r: body, n: &sent})
	close(stop)
	<-done
	return err
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
