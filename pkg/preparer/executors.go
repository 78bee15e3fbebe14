package preparer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"gitlab-serverless-runner/pkg/jobimage"
)

// Executors gives the executor binary to put into images for an
// architecture, with its digest ("sha256:…").
type Executors interface {
	Executor(arch jobimage.Arch) (binary []byte, digest string, err error)
}

// ExecutorDir reads executor binaries from Dir/<arch>/executor (the
// preparation function's package holds one per architecture, built by
// `make build-PreparerFunction`), each once.
type ExecutorDir struct {
	Dir string

	mu    sync.Mutex
	cache map[jobimage.Arch]executorFile
}

type executorFile struct {
	binary []byte
	digest string
}

var _ Executors = (*ExecutorDir)(nil)

// Executor returns the binary for arch and its digest.
func (d *ExecutorDir) Executor(arch jobimage.Arch) ([]byte, string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.cache[arch]; ok {
		return f.binary, f.digest, nil
	}
	p := filepath.Join(d.Dir, string(arch), "executor")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, "", fmt.Errorf("preparer: read the %s executor: %w", arch, err)
	}
	if len(b) == 0 {
		return nil, "", fmt.Errorf("preparer: the %s executor at %s is empty", arch, p)
	}
	sum := sha256.Sum256(b)
	f := executorFile{binary: b, digest: "sha256:" + hex.EncodeToString(sum[:])}
	if d.cache == nil {
		d.cache = map[jobimage.Arch]executorFile{}
	}
	d.cache[arch] = f
	return f.binary, f.digest, nil
}
