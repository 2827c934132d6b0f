package vmcmd

import "testing"

func TestSplitVMPath(t *testing.T) {
	tests := []struct{ in, vm, path string }{
		{"web:/root/f", "web", "/root/f"},
		{"web:", "web", ""},
		{"./a:b", "", "./a:b"},
		{"/tmp/x", "", "/tmp/x"},
		{":x", "", ":x"},
	}
	for _, tt := range tests {
		if vm, path := splitVMPath(tt.in); vm != tt.vm || path != tt.path {
			t.Errorf("splitVMPath(%q) = %q, %q; want %q, %q", tt.in, vm, path, tt.vm, tt.path)
		}
	}
}
