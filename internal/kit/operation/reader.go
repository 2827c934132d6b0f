package operation

import (
	"context"
	"io"
)

// Reader reads from r until ctx is done, so a long copy stops when its
// operation is canceled, and reports the bytes read so far to fn (when
// set) every `every` bytes and at the end.
type Reader struct {
	ctx   context.Context
	r     io.Reader
	every int64
	fn    func(n int64)
	last  int64
	// N is how many bytes have been read.
	N int64
}

// NewReader wraps r.
func NewReader(ctx context.Context, r io.Reader, every int64, fn func(n int64)) *Reader {
	return &Reader{ctx: ctx, r: r, every: every, fn: fn}
}

func (c *Reader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.N += int64(n)
	if c.fn != nil && (c.N-c.last >= c.every || err == io.EOF) {
		c.last = c.N
		c.fn(c.N)
	}
	return n, err
}
