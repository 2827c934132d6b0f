// Package version identifies this build of banger.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/banger-dev/banger/internal/wire/api"
)

// Version is set at link time (-ldflags "-X .../version.Version=v0.1.0").
var Version = "dev"

// Info describes this build.
func Info() api.VersionInfo {
	v := api.VersionInfo{Version: Version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v.Commit = s.Value[:12]
			}
			if s.Key == "vcs.modified" && s.Value == "true" {
				v.Commit += "-dirty"
			}
		}
	}
	return v
}
