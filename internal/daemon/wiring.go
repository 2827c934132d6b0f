package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// AgentName is the guest agent's binary name.
const AgentName = "banger-agent"

// findAgent locates the guest agent: the configured path (which must
// exist), else next to the running banger binary, else on PATH. It
// returns "" when there is none.
func findAgent(configured string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("agent_path: %w", err)
		}
		return configured, nil
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			cand := filepath.Join(filepath.Dir(exe), AgentName)
			if _, err := os.Stat(cand); err == nil {
				return cand, nil
			}
		}
	}
	if p, err := exec.LookPath(AgentName); err == nil {
		return filepath.Abs(p)
	}
	return "", nil
}
