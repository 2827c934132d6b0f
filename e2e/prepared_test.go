//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// preparedState is a daemon's state directory holding the test kernel
// (test-deb), pulled once for the whole run. Envs that boot VMs start
// from it (withKernel) rather than each unpacking the .deb again, which
// took about 8 s an env; the tests of pulling and importing kernels
// start empty and pull for themselves.
var preparedState string

// prepareKernel runs a daemon of its own on dir, serves the kernel
// package on 127.0.0.1 for its catalog, pulls test-deb and stops it.
func prepareKernel(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, kernelDeb) })}
	go srv.Serve(ln)
	defer srv.Close()
	sum, err := sha256Of(kernelDeb)
	if err != nil {
		return err
	}
	state, sock, cfg := filepath.Join(dir, "state"), filepath.Join(dir, "banger.sock"), filepath.Join(dir, "config.toml")
	catalog := fmt.Sprintf(`{"kernels":[{"name":"test-deb","version":"6.1","arch":"x86_64","description":"e2e","sources":[{"kind":"deb","url":"http://%s/k.deb","sha256":%q}]}]}`, ln.Addr(), sum)
	if err := os.WriteFile(filepath.Join(dir, "catalog.json"), []byte(catalog), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte(noGuard+"kernel_catalogs = [\"catalog.json\"]\n"), 0o644); err != nil {
		return err
	}
	daemon := exec.Command(bangerBin, "daemon", "--state-dir", state, "--socket", sock, "--config", cfg)
	log, _ := os.Create(filepath.Join(dir, "daemon.log"))
	defer log.Close()
	daemon.Stdout, daemon.Stderr = log, log
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for {
		if err := cli(ctx, sock, "status"); err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the preparing daemon did not answer (see %s)", log.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cli(ctx, sock, "kernel", "pull", "test-deb"); err != nil {
		return err
	}
	preparedState = state
	return nil
}

func cli(ctx context.Context, sock string, args ...string) error {
	cmd := exec.CommandContext(ctx, bangerBin, args...)
	cmd.Env = append(os.Environ(), "BANGER_SOCKET="+sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("banger %v: %v: %s", args, err, out)
	}
	return nil
}

// withKernel starts e's state from the prepared one: the kernel's files
// as hard links (published kernels are never written again, and a test
// removing its kernel unlinks its own names only) and a copy of the
// database. Call it before the daemon's first start.
func (e *env) withKernel() {
	e.t.Helper()
	if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-al", filepath.Join(preparedState, "kernels"), filepath.Join(e.stateDir, "kernels")).CombinedOutput(); err != nil {
		e.t.Fatalf("link the prepared kernel: %v: %s", err, out)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(preparedState, "banger.db"), filepath.Join(e.stateDir, "banger.db")).CombinedOutput(); err != nil {
		e.t.Fatalf("copy the prepared database: %v: %s", err, out)
	}
}
