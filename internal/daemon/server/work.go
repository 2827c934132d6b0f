package server

import (
	"fmt"
	"net/http"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/units"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// TrailerError carries an error that happened after a stream's first
// byte, when the status line was already sent.
const TrailerError = "X-Banger-Error"

// stageSeed takes a work seed as a tar body: the client read the files
// with its own rights; the daemon builds a disk from the stream and never
// opens a path of the client's.
func (s *Server) stageSeed(w http.ResponseWriter, r *http.Request) {
	if s.d.Seeds == nil {
		writeError(w, fmt.Errorf("this daemon takes no work seeds: %w", errdefs.ErrUnavailable))
		return
	}
	q := r.URL.Query()
	meta := api.Work{Source: q.Get("source"), Base: q.Get("base"), Branch: q.Get("branch"), SeedCommit: q.Get("seed_commit")}
	var disk int64
	if d := q.Get("disk"); d != "" {
		n, err := units.ParseSize(d, units.MiB)
		if err != nil {
			writeError(w, fmt.Errorf("work disk size: %w", err))
			return
		}
		disk = n
	}
	seed, err := s.d.Seeds.Stage(r.Context(), r.Body, meta, disk)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, seed)
}

// exportWork streams the VM's /work as tar. An error after the first
// byte is reported in the X-Banger-Error trailer, so that a client never
// takes a cut stream for the whole work.
func (s *Server) exportWork(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := names.Validate("vm", name); err != nil {
		writeError(w, err)
		return
	}
	if err := s.d.VMs.CheckWork(r.Context(), name); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Trailer", TrailerError)
	cw := &countingWriter{w: w}
	err := s.d.VMs.ExportWork(r.Context(), name, cw)
	if err != nil && cw.n == 0 {
		w.Header().Del("Trailer")
		writeError(w, err)
		return
	}
	if err != nil {
		s.d.Log.Warn("export work", "vm", name, "err", err)
		w.Header().Set(TrailerError, err.Error())
	}
}

type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	// An empty write would send the response's header (200) while n
	// says nothing was written: an error after it would then go out as
	// a JSON body inside a 200 tar stream.
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) workPulled(w http.ResponseWriter, r *http.Request) {
	var req api.WorkPulled
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	v, err := s.d.VMs.WorkPulled(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) authSync(w http.ResponseWriter, r *http.Request) {
	var req api.AuthSync
	// Lent files are bounded to 1 MiB, which base64 makes 4/3 larger.
	if err := decodeLimit(r, &req, 2<<20); err != nil {
		writeError(w, err)
		return
	}
	v, err := s.d.VMs.AuthSync(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) secrets(w http.ResponseWriter, r *http.Request) {
	var req api.SecretsRequest
	// 32 values of at most 16 KiB each, with their hosts.
	if err := decodeLimit(r, &req, 1<<20); err != nil {
		writeError(w, err)
		return
	}
	v, err := s.d.VMs.Secrets(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// putUpload takes a file (kind=file) or a directory tree as tar
// (kind=tree) that a later request names by ID: the client opened it with
// its own rights; the daemon never opens a path a client names.
func (s *Server) putUpload(w http.ResponseWriter, r *http.Request) {
	if s.d.Uploads == nil {
		writeError(w, fmt.Errorf("this daemon takes no uploads: %w", errdefs.ErrUnavailable))
		return
	}
	u, err := s.d.Uploads.Put(r.Context(), r.Body, r.URL.Query().Get("kind"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}
