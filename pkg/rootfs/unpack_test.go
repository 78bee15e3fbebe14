package rootfs_test

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"gitlab-serverless-runner/pkg/jobimage/registrytest"
	"gitlab-serverless-runner/pkg/rootfs"
)

func unpack(t *testing.T, img v1.Image) (string, error) {
	t.Helper()
	c := &rootfs.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	return c.Unpack(context.Background(), img)
}

func TestUnpackAppliesLayersAndWhiteouts(t *testing.T) {
	root, err := unpack(t, registrytest.BusyboxImage(t, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/gone", "opt/old/a"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("/%s survived its whiteout (err %v)", p, err)
		}
	}
	for p, want := range map[string]string{
		"opt/old/b":           "new\n",
		"etc/arch":            "amd64\n",
		"usr/local/bin/greet": registrytest.GreetScript,
	} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(b) != want {
			t.Errorf("/%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("/bin/sh → %q, %v; want busybox", l, err)
	}
	fi, err := os.Stat(filepath.Join(root, "tmp"))
	if err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp mode %v, %v; want sticky", fi.Mode(), err)
	}
}

func TestUnpackIsCachedByDigest(t *testing.T) {
	c := &rootfs.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	img := registrytest.BusyboxImage(t, "amd64")
	root, err := c.Unpack(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if root != c.Path(d) {
		t.Errorf("root %s; want %s", root, c.Path(d))
	}
	marker := filepath.Join(root, "etc", "marker")
	if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := c.Unpack(context.Background(), img)
	if err != nil || again != root {
		t.Fatalf("second Unpack = %s, %v; want %s", again, err, root)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("second Unpack unpacked again: %v", err)
	}
	entries, _ := os.ReadDir(c.Dir)
	if len(entries) != 1 {
		t.Errorf("cache holds %d entries; want 1", len(entries))
	}
}

// No layer writes outside the root, whatever its names and links say.
func TestUnpackNeverWritesOutsideTheRoot(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := func(name string, typ byte, link string) registrytest.Entry {
		return registrytest.Entry{Name: name, Type: typ, Link: link, Body: []byte("pwned")}
	}
	refused := map[string][]registrytest.Entry{
		"dot-dot":              {e("../../../../"+strings.TrimPrefix(outside, "/")+"/pwned", 0, "")},
		"dot-dot inside":       {e("etc/../../pwned", 0, "")},
		"absolute":             {e(outside+"/pwned", 0, "")},
		"hard link dot-dot":    {e("hl", tar.TypeLink, "../../../../"+strings.TrimPrefix(secret, "/"))},
		"hard link through ln": {e("d", tar.TypeSymlink, outside), e("hl", tar.TypeLink, "d/secret")},
	}
	for name, entries := range refused {
		t.Run(name, func(t *testing.T) {
			img := registrytest.Image(t, "amd64", v1.Config{}, registrytest.Layer(t, entries...))
			if _, err := unpack(t, img); err == nil {
				t.Error("Unpack accepted the layer")
			}
		})
	}
	contained := map[string][][]registrytest.Entry{
		"absolute symlink parent": {{e("evil", tar.TypeSymlink, outside)}, {e("evil/pwned", 0, "")}},
		"relative symlink parent": {{e("up", tar.TypeSymlink, "../../../../../../../.."+outside)}, {e("up/pwned", 0, "")}},
		"symlink replaced":        {{e("secret", tar.TypeSymlink, secret)}, {e("secret", 0, "")}},
		"symlink to root":         {{e("r", tar.TypeSymlink, "/")}, {e("r"+outside+"/pwned", 0, "")}},
	}
	for name, layers := range contained {
		t.Run(name, func(t *testing.T) {
			var ls []v1.Layer
			for _, l := range layers {
				ls = append(ls, registrytest.Layer(t, l...))
			}
			root, err := unpack(t, registrytest.Image(t, "amd64", v1.Config{}, ls...))
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if !strings.HasPrefix(root, filepath.Dir(filepath.Dir(root))) {
				t.Fatal("root outside its cache")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); !os.IsNotExist(err) {
		t.Errorf("a layer wrote %s/pwned (err %v)", outside, err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host" {
		t.Errorf("host file changed to %q", b)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(secret, &st); err != nil || st.Nlink != 1 {
		t.Errorf("host file has %d links (err %v); want 1", st.Nlink, err)
	}
}

// The cache lives on the host: an image's setuid binaries must not become
// setuid files there.
func TestUnpackDropsSetuidBits(t *testing.T) {
	img := registrytest.Image(t, "amd64", v1.Config{}, registrytest.Layer(t,
		registrytest.Entry{Name: "su", Mode: 0o4755, Body: []byte("x")},
		registrytest.Entry{Name: "sg", Mode: 0o2755, Body: []byte("x")}))
	root, err := unpack(t, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"su", "sg"} {
		fi, err := os.Stat(filepath.Join(root, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
			t.Errorf("/%s mode %v; want 0755 without setuid/setgid", n, fi.Mode())
		}
	}
}
