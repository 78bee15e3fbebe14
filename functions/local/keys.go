package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// persisted returns the value kept in dir/name, creating it with generate
// on first use. With no dir the value is generated and lives as long as the
// process. Files are readable by their owner only: they hold keys.
func persisted(dir, name string, generate func() string) (string, error) {
	if dir == "" {
		return generate(), nil
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("local: read %s: %w", name, err)
	}
	v := generate()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("local: create data directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("local: write %s: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("local: write %s: %w", name, err)
	}
	return v, nil
}
