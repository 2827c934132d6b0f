package vm

import (
	"path/filepath"

	"github.com/banger-dev/banger/internal/service/workspace"
)

func workDisk(dir string) string { return filepath.Join(dir, workspace.DiskName) }
