package guestssh

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCommandQuoting(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"uname", "-r"}, "uname -r"},
		{[]string{"sh", "-c", "exit 7"}, "sh -c 'exit 7'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"echo", ""}, "echo ''"},
		{[]string{"ls", "/tmp/a=b,c"}, "ls /tmp/a=b,c"},
		{[]string{"echo", "$HOME"}, "echo '$HOME'"},
	}
	for _, tt := range tests {
		if got := Command(tt.argv); got != tt.want {
			t.Errorf("Command(%q) = %s, want %s", tt.argv, got, tt.want)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "id_ed25519")
	k1, line1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v, %v", st, err)
	}
	pub, _ := os.ReadFile(path + ".pub")
	if string(pub) != line1+"\n" {
		t.Fatalf(".pub = %q, want %q", pub, line1)
	}
	k2, line2, err := LoadOrCreateKey(path)
	if err != nil || line2 != line1 || string(k2.PublicKey().Marshal()) != string(k1.PublicKey().Marshal()) {
		t.Fatalf("second load gave another key: %v", err)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a garbage key file was accepted")
	}
}
