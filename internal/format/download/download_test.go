package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestFetch(t *testing.T) {
	body := bytes.Repeat([]byte("kernel"), 10000)
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write(body)
		case "/truncated":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:100])
		case "/missing":
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	var calls int
	var buf bytes.Buffer
	res, err := Client{}.Fetch(ctx, srv.URL+"/ok", &buf, Options{SHA256: good, Progress: func(d, t int64) { calls++ }})
	if err != nil || res.SHA256 != good || res.Size != int64(len(body)) || !bytes.Equal(buf.Bytes(), body) || calls == 0 {
		t.Fatalf("fetch ok: %+v, %v, progress calls %d", res, err, calls)
	}

	tests := []struct {
		path string
		opt  Options
		want error
	}{
		{"/ok", Options{SHA256: "00" + good[2:]}, errdefs.ErrChecksum},
		{"/ok", Options{Limit: 100}, errdefs.ErrInvalid},
		{"/truncated", Options{}, errdefs.ErrUnavailable},
		{"/missing", Options{}, errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		_, err := Client{}.Fetch(ctx, srv.URL+tt.path, &bytes.Buffer{}, tt.opt)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s %+v: err = %v, want %v", tt.path, tt.opt, err, tt.want)
		}
	}
}
