package archive

import (
	"archive/zip"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
)

// Archive formats of an artifacts entry (`artifact_format`).
const (
	FormatZip  = "zip"
	FormatGzip = "gzip"
	FormatRaw  = "raw"
)

// FileName is the upload file name GitLab expects for an archive called
// name (default "default") in format: name.zip, name.gz, or name for raw.
// Only the base name of name is used.
func FileName(name, format string) string {
	name = path.Base(filepath.ToSlash(name))
	if name == "." || name == "/" || name == "" {
		name = "default"
	}
	switch format {
	case FormatGzip:
		return name + ".gz"
	case FormatRaw:
		return name
	default:
		return name + ".zip"
	}
}

// Write writes files (slash paths relative to dir, as Select returns them)
// to w in format: "zip" (also the default for ""), "gzip" or "raw".
func Write(w io.Writer, format, dir string, files []string, warn io.Writer) error {
	switch format {
	case FormatZip, "":
		return WriteZip(w, dir, files, warn)
	case FormatGzip:
		return WriteGzip(w, dir, files, warn)
	case FormatRaw:
		return WriteRaw(w, dir, files, warn)
	default:
		return fmt.Errorf("archive: write %q: unsupported format", format)
	}
}

// flateLevel trades a little size for speed: jobs run on small Lambda CPUs
// and archives usually travel a fast network, so compressing faster
// shortens the job more than a smaller upload would.
const flateLevel = flate.BestSpeed

var flatePool sync.Pool

type pooledFlate struct{ fw *flate.Writer }

func (p *pooledFlate) Write(b []byte) (int, error) { return p.fw.Write(b) }

func (p *pooledFlate) Close() error {
	if p.fw == nil {
		return nil
	}
	err := p.fw.Close()
	flatePool.Put(p.fw)
	p.fw = nil
	return err
}

func newFlate(w io.Writer) (io.WriteCloser, error) {
	if fw, ok := flatePool.Get().(*flate.Writer); ok {
		fw.Reset(w)
		return &pooledFlate{fw: fw}, nil
	}
	fw, err := flate.NewWriter(w, flateLevel)
	if err != nil {
		return nil, err
	}
	return &pooledFlate{fw: fw}, nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyFile copies through a pooled buffer. The reader and writer are
// wrapped so that io.CopyBuffer cannot hand the copy to *os.File's
// ReadFrom/WriteTo, whose fallbacks allocate a fresh buffer per file.
func copyFile(dst io.Writer, src io.Reader) error {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
	return err
}

// WriteZip streams a zip archive of files (slash paths relative to dir) to
// w: regular files deflated, directories as entries of their own, symlinks
// stored as links; modes and modification times kept. Nothing is buffered
// beyond a small copy buffer, so w may be an upload body. Files that are
// neither regular, directory nor symlink (sockets, pipes, devices) are
// reported on warn and skipped; a file that cannot be read fails the
// archive. warn may be nil.
func WriteZip(w io.Writer, dir string, files []string, warn io.Writer) error {
	if warn == nil {
		warn = io.Discard
	}
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, newFlate)
	for _, name := range files {
		if err := addZipEntry(zw, dir, name, warn); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("archive: finish zip: %w", err)
	}
	return nil
}

func addZipEntry(zw *zip.Writer, dir, name string, warn io.Writer) error {
	full := filepath.Join(dir, filepath.FromSlash(name))
	info, err := os.Lstat(full)
	if err != nil {
		return fmt.Errorf("archive: add %s: %w", name, err)
	}
	hdr, err := zip.FileInfoHeader(info)
	if err != nil {
		return fmt.Errorf("archive: add %s: %w", name, err)
	}
	hdr.Name = name
	switch mode := info.Mode(); {
	case mode.IsDir():
		hdr.Name += "/"
		hdr.Method = zip.Store
		if _, err := zw.CreateHeader(hdr); err != nil {
			return fmt.Errorf("archive: add %s: %w", name, err)
		}
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("archive: add %s: %w", name, err)
		}
		hdr.Method = zip.Store
		ew, err := zw.CreateHeader(hdr)
		if err == nil {
			_, err = io.WriteString(ew, target)
		}
		if err != nil {
			return fmt.Errorf("archive: add %s: %w", name, err)
		}
	case mode.IsRegular():
		f, err := os.Open(full)
		if err != nil {
			return fmt.Errorf("archive: add %s: %w", name, err)
		}
		defer f.Close()
		hdr.Method = zip.Deflate
		if info.Size() == 0 {
			hdr.Method = zip.Store
		}
		ew, err := zw.CreateHeader(hdr)
		if err == nil {
			err = copyFile(ew, f)
		}
		if err != nil {
			return fmt.Errorf("archive: add %s: %w", name, err)
		}
	default:
		fmt.Fprintf(warn, "WARNING: %s: not a regular file, directory or symlink, skipped\n", name)
	}
	return nil
}

// WriteGzip writes each regular file of files to w as its own gzip member,
// members concatenated in file name order, the way GitLab stores reports.
// Each member's header carries the file's base name and modification time.
// Directories are skipped; a symlink is followed only when its target stays
// inside dir (otherwise warned and skipped). warn may be nil.
func WriteGzip(w io.Writer, dir string, files []string, warn io.Writer) error {
	regular, err := regularFiles(dir, files, warn)
	if err != nil {
		return err
	}
	sort.Strings(regular)
	gz, err := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("archive: start gzip: %w", err)
	}
	for _, name := range regular {
		if err := addGzipMember(gz, w, dir, name); err != nil {
			return err
		}
	}
	return nil
}

func addGzipMember(gz *gzip.Writer, w io.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return fmt.Errorf("archive: add %s: %w", name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive: add %s: %w", name, err)
	}
	gz.Reset(w)
	gz.Name = latin1(path.Base(name))
	gz.ModTime = info.ModTime()
	if err := copyFile(gz, f); err != nil {
		return fmt.Errorf("archive: add %s: %w", name, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("archive: add %s: %w", name, err)
	}
	return nil
}

// latin1 returns s when every rune fits the gzip header's Latin-1 and ""
// otherwise: a name the header cannot carry is better left out than
// failing the report.
func latin1(s string) string {
	for _, r := range s {
		if r > 0xff || r == 0 {
			return ""
		}
	}
	return s
}

// WriteRaw copies the single regular file among files to w as it is. It
// fails when files name no regular file or more than one.
func WriteRaw(w io.Writer, dir string, files []string, warn io.Writer) error {
	regular, err := regularFiles(dir, files, warn)
	if err != nil {
		return err
	}
	if len(regular) != 1 {
		return fmt.Errorf("archive: write raw: got %d files, want exactly one", len(regular))
	}
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(regular[0])))
	if err != nil {
		return fmt.Errorf("archive: write raw %s: %w", regular[0], err)
	}
	defer f.Close()
	if err := copyFile(w, f); err != nil {
		return fmt.Errorf("archive: write raw %s: %w", regular[0], err)
	}
	return nil
}

// regularFiles keeps the files that are, or link within dir to, regular
// files.
func regularFiles(dir string, files []string, warn io.Writer) ([]string, error) {
	if warn == nil {
		warn = io.Discard
	}
	root, err := filepath.Abs(dir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: resolve dir: %w", err)
	}
	var out []string
	for _, name := range files {
		full := filepath.Join(root, filepath.FromSlash(name))
		info, err := os.Lstat(full)
		if err != nil {
			return nil, fmt.Errorf("archive: add %s: %w", name, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(full)
			if err != nil {
				fmt.Fprintf(warn, "WARNING: %s: %v, skipped\n", name, err)
				continue
			}
			if _, ok := within(root, real); !ok {
				fmt.Fprintf(warn, "WARNING: %s: links outside the project directory, skipped\n", name)
				continue
			}
			if info, err = os.Stat(real); err != nil {
				return nil, fmt.Errorf("archive: add %s: %w", name, err)
			}
		}
		if info.Mode().IsRegular() {
			out = append(out, name)
		}
	}
	return out, nil
}
