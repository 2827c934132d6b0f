package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMissingFileMeansDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultImageName != "debian-bookworm" || cfg.MaxDownloadBytes <= 0 {
		t.Fatalf("defaults = %+v", cfg)
	}
}

func TestLoad(t *testing.T) {
	p := write(t, `
default_image_name = "alpine"
kernel_catalogs = ["extra.json", "/abs/k.json", "https://example.org/k.json"]
[registry_mirrors]
"docker.io" = ["http://127.0.0.1:5000"]
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultImageName != "alpine" {
		t.Errorf("default_image_name = %q", cfg.DefaultImageName)
	}
	want := []string{filepath.Join(filepath.Dir(p), "extra.json"), "/abs/k.json", "https://example.org/k.json"}
	for i := range want {
		if cfg.KernelCatalogs[i] != want[i] {
			t.Errorf("kernel_catalogs[%d] = %q, want %q", i, cfg.KernelCatalogs[i], want[i])
		}
	}
	if cfg.RegistryMirrors["docker.io"][0] != "http://127.0.0.1:5000" {
		t.Errorf("mirrors = %v", cfg.RegistryMirrors)
	}
	if cfg.MaxDownloadBytes != Defaults().MaxDownloadBytes {
		t.Errorf("unset key lost its default")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{`default_image_nme = "x"`, "unknown setting default_image_nme"},
		{`default_image_name = "../etc"`, "default_image_name"},
		{`kernel_catalogs = ["ftp://x/y.json"]`, "only https://"},
		{`kernel_catalogs = ["http://example.org/k.json"]`, "only https://"},
		{`max_download_bytes = -1`, "max_download_bytes"},
		{`this is not toml`, "config"},
		{`default_network = "wifi"`, "default_network"},
		{`bridge_name = "bg-mine"`, "bridge_name"},
		{`bridge_name = "a-name-too-long-for-linux"`, "bridge_name"},
		{`bridge_subnet = "10.0.0.0/8"`, "bridge_subnet"},
		{`bridge_subnet = "fd00::/64"`, "bridge_subnet"},
		{`bridge_subnet = "10.1.2.0/30"`, "bridge_subnet"},
		{`dns_upstream = "resolver.example"`, "dns_upstream"},
	}
	for _, tt := range tests {
		_, err := Load(write(t, tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q) = %v, want error containing %q", tt.body, err, tt.want)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Load(%q) error is not ErrInvalid: %v", tt.body, err)
		}
	}
}

func TestNetworkSettings(t *testing.T) {
	c, err := Load(write(t, "default_network = \"bridge\"\nbridge_subnet = \"10.99.7.9/24\"\ndns_upstream = \"192.0.2.53\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultNetwork != "bridge" || c.Subnet().String() != "10.99.7.0/24" || c.Upstream() != "192.0.2.53:53" {
		t.Errorf("network %q, subnet %s, upstream %q", c.DefaultNetwork, c.Subnet(), c.Upstream())
	}
	c, _ = Load(write(t, "dns_upstream = \"192.0.2.53:5353\"\n"))
	if c.Upstream() != "192.0.2.53:5353" || c.DefaultNetwork != "user" || c.BridgeName != "banger0" {
		t.Errorf("upstream %q, network %q, bridge %q", c.Upstream(), c.DefaultNetwork, c.BridgeName)
	}
}

// Each limit names itself, and errors from several groups of settings
// come in the order of the config's sections.
func TestValidateLimits(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"download", func(c *Config) { c.MaxDownloadBytes = 0 }, "max_download_bytes must be positive: invalid"},
		{"seed", func(c *Config) { c.MaxSeedBytes = -1 }, "max_seed_bytes must be positive: invalid"},
		{"pull entries", func(c *Config) { c.MaxPullEntries = 0 }, "max_pull_bytes and max_pull_entries must be positive: invalid"},
		{"unpacked", func(c *Config) { c.MaxUnpackedBytes = 0 }, "max_unpacked_bytes must be positive: invalid"},
		{"vms per user", func(c *Config) { c.MaxVMsPerUser = -1 }, "max_vms_per_user and max_cpus_per_user must not be negative (0 is no limit): invalid"},
		{"memory per user", func(c *Config) { c.MaxMemoryPerUser = "101%" }, `max_memory_per_user "101%": a share of the host's memory is 1% to 100%: invalid`},
		{"several, in order", func(c *Config) { c.DefaultCPUs, c.MaxSeedBytes, c.UserNet = 0, 0, "tap" },
			"user_net \"tap\": want auto, passt, isolated or slirp: invalid\nmax_seed_bytes must be positive: invalid\ndefault_cpus must be at least 1: invalid"},
	}
	for _, tt := range tests {
		c := Defaults()
		tt.mutate(&c)
		got := ""
		if err := c.Validate(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: Validate() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
