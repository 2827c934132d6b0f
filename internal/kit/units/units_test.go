package units

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		unit int64
		want int64
		bad  bool
	}{
		{"512", MiB, 512 * MiB, false},
		{"512M", 1, 512 * MiB, false},
		{"2G", MiB, 2 * GiB, false},
		{"2GiB", 1, 2 * GiB, false},
		{"2gb", 1, 2 * GiB, false},
		{"1.5G", 1, 3 * GiB / 2, false},
		{"4096", 1, 4096, false},
		{"1T", 1, TiB, false},
		{"", 1, 0, true},
		{"G", 1, 0, true},
		{"-1G", 1, 0, true},
		{"12X", 1, 0, true},
		{"9999999T", 1, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in, tt.unit)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
