package registrytest

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxEnv names the variable that points at a statically linked busybox;
// without it /bin/busybox and /usr/bin/busybox are tried (Debian's
// busybox-static package, installed by .ci/install).
const BusyboxEnv = "GSR_TEST_BUSYBOX"

// Entry is one tar entry of a test layer.
type Entry struct {
	Name string
	// Type is a tar type flag; 0 means a regular file.
	Type byte
	// Mode is the permission bits; 0 means 0644 (0755 for directories).
	Mode int64
	// Body is a regular file's content.
	Body []byte
	// Link is a symbolic or hard link's target.
	Link string
}

// Layer returns a gzip-compressed OCI layer holding entries, in order.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("registrytest: layer entry %s: %v", e.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatalf("registrytest: layer: %v", err)
	}
	return l
}

// Image returns an OCI image for os/arch with cfg and layers.
func Image(t testing.TB, arch string, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatalf("registrytest: image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Unix(1700000000, 0).UTC()}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index returns an OCI index of imgs, each entry's platform linux/<arch>
// taken from the image's configuration.
func Index(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}}})
	}
	return idx
}

// Busybox returns the bytes of a statically linked busybox from this
// machine, failing the test (with how to install one) when there is none.
func Busybox(t testing.TB) []byte {
	t.Helper()
	paths := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p := os.Getenv(BusyboxEnv); p != "" {
		paths = []string{p}
	}
	for _, p := range paths {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if !static {
			t.Fatalf("registrytest: %s is dynamically linked; install Debian's busybox-static (`make deps` does) or set %s", p, BusyboxEnv)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("registrytest: read busybox: %v", err)
		}
		return b
	}
	t.Fatalf("registrytest: no static busybox at %v; install Debian's busybox-static (`make deps` does) or set %s", paths, BusyboxEnv)
	return nil
}

// Applets are the busybox commands the test image links in /bin.
var Applets = []string{"cat", "echo", "env", "id", "ls", "mkdir", "touch", "rm", "test", "grep",
	"printf", "true", "false", "sleep", "wc", "head", "tr", "cut", "uname", "stat", "readlink", "chmod", "mount", "pwd"}

// GreetScript is the test image's one tool, /usr/local/bin/greet.
const GreetScript = "#!/bin/sh\necho \"hello from greet: $*\"\n"

// BusyboxImage returns the test image for arch ("amd64" or "arm64"): a
// root file system with the host's static busybox as /bin/sh (and
// Applets), users root and 993, and the tool /usr/local/bin/greet, in two
// layers. The second layer also deletes /etc/gone (a whiteout) and replaces
// the contents of /opt/old (an opaque directory), as docker builds do.
//
// The arm64 image carries the same (x86-64) busybox, which need not run:
// it differs by /etc/arch and its platform, so its manifest is distinct.
func BusyboxImage(t testing.TB, arch string) v1.Image {
	t.Helper()
	bb := Busybox(t)
	base := []Entry{
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/busybox", Mode: 0o755, Body: bb},
		{Name: "bin/sh", Type: tar.TypeSymlink, Link: "busybox"},
		{Name: "dev/", Type: tar.TypeDir},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/passwd", Body: []byte("root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/tmp:/bin/sh\n")},
		{Name: "etc/group", Body: []byte("root:x:0:\nsbx_user1051:x:990:\n")},
		{Name: "etc/gone", Body: []byte("deleted by the next layer\n")},
		{Name: "opt/", Type: tar.TypeDir},
		{Name: "opt/old/", Type: tar.TypeDir},
		{Name: "opt/old/a", Body: []byte("hidden by the next layer\n")},
		{Name: "proc/", Type: tar.TypeDir},
		{Name: "root/", Type: tar.TypeDir, Mode: 0o700},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "usr/", Type: tar.TypeDir},
		{Name: "usr/bin/", Type: tar.TypeDir},
		{Name: "usr/local/", Type: tar.TypeDir},
		{Name: "work/", Type: tar.TypeDir},
	}
	for _, a := range Applets {
		base = append(base, Entry{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox"})
	}
	top := []Entry{
		{Name: "etc/.wh.gone", Body: nil},
		{Name: "etc/arch", Body: []byte(arch + "\n")},
		{Name: "opt/old/", Type: tar.TypeDir},
		{Name: "opt/old/.wh..wh..opq"},
		{Name: "opt/old/b", Body: []byte("new\n")},
		{Name: "usr/local/bin/", Type: tar.TypeDir},
		{Name: "usr/local/bin/greet", Mode: 0o755, Body: []byte(GreetScript)},
	}
	cfg := v1.Config{
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "IMAGE_FLAVOUR=test"},
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"greet"},
		WorkingDir: "/work",
		Labels:     map[string]string{"org.opencontainers.image.title": "gsr test image"},
	}
	return Image(t, arch, cfg, Layer(t, base...), Layer(t, top...))
}
