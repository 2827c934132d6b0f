package runner

import (
	"context"
	"strings"
	"testing"
)

func TestExec(t *testing.T) {
	out, err := Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo out; echo oops >&2"}})
	if err != nil || string(out) != "out\n" {
		t.Fatalf("out %q, err %v", out, err)
	}
	_, err = Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo 'E: Unable to locate package x' >&2; exit 100"}})
	if err == nil || !strings.Contains(err.Error(), "Unable to locate package x") || !strings.Contains(err.Error(), "exit status 100") {
		t.Fatalf("failure error %v lacks stderr and status", err)
	}
	out, err = Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "pwd; echo $FOO"}, Dir: "/", Env: []string{"FOO=bar"}})
	if err != nil || string(out) != "/\nbar\n" {
		t.Fatalf("dir/env: %q %v", out, err)
	}
}

func TestRecorder(t *testing.T) {
	r := &Recorder{}
	r.Run(context.Background(), Cmd{Name: "ip", Args: []string{"link", "add", "br0"}})
	if got := r.Calls(); len(got) != 1 || got[0] != "ip link add br0" {
		t.Fatalf("calls = %v", got)
	}
	if _, err := r.LookPath("qemu"); err == nil {
		t.Fatal("unknown program found")
	}
}
