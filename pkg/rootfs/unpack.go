package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Cache holds unpacked root file systems, one directory per image manifest
// digest under Dir. The zero value is unusable: set Dir.
type Cache struct {
	// Dir is the cache directory; it is created if missing.
	Dir string
}

// Path returns where the root file system of the image with manifest
// digest d is (or would be) unpacked.
func (c *Cache) Path(d v1.Hash) string {
	return filepath.Join(c.Dir, d.Algorithm+"-"+d.Hex)
}

// Unpack returns the root file system of img, unpacking its layers on first
// use. img is usually a remote image (jobimage.Resolved.Image), whose layers
// are downloaded here. Concurrent calls for one image unpack it more than
// once but agree on the result; a failed unpack leaves nothing behind.
func (c *Cache) Unpack(ctx context.Context, img v1.Image) (string, error) {
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("rootfs: unpack: read digest: %w", err)
	}
	final := c.Path(d)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: unpack %s: %w", d, err)
	}
	tmp, err := os.MkdirTemp(c.Dir, ".unpack-")
	if err != nil {
		return "", fmt.Errorf("rootfs: unpack %s: %w", d, err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: unpack %s: %w", d, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return "", fmt.Errorf("rootfs: unpack %s: list layers: %w", d, err)
	}
	u := &unpacker{root: tmp, dirModes: map[string]fs.FileMode{}}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("rootfs: unpack %s: %w", d, err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return "", fmt.Errorf("rootfs: unpack %s: layer %d: %w", d, i, err)
		}
		err = u.apply(rc)
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("rootfs: unpack %s: layer %d: %w", d, i, err)
		}
	}
	if err := u.finish(); err != nil {
		return "", fmt.Errorf("rootfs: unpack %s: %w", d, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return final, nil // unpacked meanwhile by another call
		}
		return "", fmt.Errorf("rootfs: unpack %s: %w", d, err)
	}
	return final, nil
}

// mountPoints must exist in every root file system: Run mounts on them.
var mountPoints = []string{"tmp", "proc", "dev"}

// unpacker applies layers to root.
type unpacker struct {
	root     string
	dirModes map[string]fs.FileMode // applied last, so a read-only directory can still be filled
}

// entryPath checks a tar entry's name and returns it relative to the root
// ("" for the root itself).
func entryPath(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("entry %q: absolute path", name)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("entry %q: path leaves the root (..)", name)
		}
	}
	n = path.Clean(n)
	if n == "." {
		return "", nil
	}
	return n, nil
}

// resolve returns the host path of rel inside the root: its parent
// directory resolved with every symbolic link followed inside the root,
// and its last component as it is (never followed).
func (u *unpacker) resolve(rel string) (string, error) {
	dir, base := path.Split(rel)
	parent, err := securejoin.SecureJoin(u.root, dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, base), nil
}

func (u *unpacker) apply(r io.Reader) error {
	tr := tar.NewReader(r)
	added := map[string]bool{} // host paths this layer wrote
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		rel, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue // the root directory itself
		}
		target, err := u.resolve(rel)
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		parent, base := filepath.Dir(target), filepath.Base(target)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		switch {
		case base == ".wh..wh..opq":
			if err := emptyDir(parent, added); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
			continue
		case strings.HasPrefix(base, ".wh."):
			gone := filepath.Join(parent, strings.TrimPrefix(base, ".wh."))
			if err := os.RemoveAll(gone); err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
			delete(u.dirModes, gone)
			continue
		}
		if err := u.write(h, tr, target); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		added[target] = true
	}
}

// emptyDir removes what lower layers put in dir (an opaque whiteout).
func emptyDir(dir string, added map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if added[p] {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// perm keeps the permission and sticky bits of a tar mode, never setuid or
// setgid.
func perm(mode int64) fs.FileMode {
	m := fs.FileMode(mode) & fs.ModePerm
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func (u *unpacker) write(h *tar.Header, r io.Reader, target string) error {
	if fi, err := os.Lstat(target); err == nil {
		if fi.IsDir() && h.Typeflag == tar.TypeDir {
			u.dirModes[target] = perm(h.Mode)
			return nil
		}
		// Replaced, never written through (a symbolic link stays unfollowed).
		if err := os.RemoveAll(target); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
		u.dirModes[target] = perm(h.Mode)
	case tar.TypeReg:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Chmod(perm(h.Mode)); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case tar.TypeSymlink:
		return os.Symlink(h.Linkname, target)
	case tar.TypeLink:
		rel, err := entryPath(h.Linkname)
		if err != nil || rel == "" {
			return fmt.Errorf("hard link to %q: not a path inside the image", h.Linkname)
		}
		src, err := u.resolve(rel)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(src)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", h.Linkname, err)
		}
		if fi.IsDir() {
			return fmt.Errorf("hard link to %q: a directory", h.Linkname)
		}
		return os.Link(src, target)
	case tar.TypeFifo:
		return unix.Mkfifo(target, uint32(perm(h.Mode)))
	case tar.TypeChar, tar.TypeBlock:
		// Device nodes cannot be made without privilege; Run provides /dev.
	default:
		// Other types (PAX headers are consumed by archive/tar) are skipped.
	}
	return nil
}

// finish creates the mount points Run needs and applies directory modes.
func (u *unpacker) finish() error {
	for _, m := range mountPoints {
		p, err := securejoin.SecureJoin(u.root, m)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("/%s is not a directory", m)
		}
	}
	for p, m := range u.dirModes {
		// Owner access is kept, so the cache can always be removed.
		if err := os.Chmod(p, m|0o700); err != nil {
			return err
		}
	}
	return nil
}
