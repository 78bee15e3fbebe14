package jobimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ExecutorPath is where the executor binary lands in a derived image; it is
// the image's entrypoint.
const ExecutorPath = "/opt/gsr/executor"

// bytesLayer is a layer held in memory, with both digests computed once.
type bytesLayer struct {
	compressed, uncompressed []byte
	digest, diffID           v1.Hash
	mediaType                types.MediaType
}

var _ v1.Layer = (*bytesLayer)(nil)

func (l *bytesLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *bytesLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *bytesLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.uncompressed)), nil
}
func (l *bytesLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *bytesLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// sha256Hash returns the sha256 digest of b.
func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// executorLayer returns the layer holding binary at ExecutorPath: root-owned,
// mode 0755 (readable and executable by Lambda's user), every time stamp
// the epoch, so the same binary always gives the same layer digest.
func executorLayer(binary []byte, mt types.MediaType) (*bytesLayer, error) {
	if len(binary) == 0 {
		return nil, fmt.Errorf("jobimage: executor binary is empty")
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	epoch := time.Unix(0, 0).UTC()
	dir := strings.TrimPrefix(path.Dir(ExecutorPath), "/")
	var parents []string
	for d := dir; d != "."; d = path.Dir(d) {
		parents = append([]string{d}, parents...)
	}
	for _, d := range parents {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("jobimage: write executor layer: %w", err)
		}
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(ExecutorPath, "/"), Mode: 0o755,
		Size: int64(len(binary)), ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("jobimage: write executor layer: %w", err)
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, fmt.Errorf("jobimage: write executor layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("jobimage: write executor layer: %w", err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("jobimage: compress executor layer: %w", err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("jobimage: compress executor layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("jobimage: compress executor layer: %w", err)
	}
	return &bytesLayer{
		compressed: gz.Bytes(), uncompressed: raw.Bytes(),
		digest: sha256Hash(gz.Bytes()), diffID: sha256Hash(raw.Bytes()), mediaType: mt,
	}, nil
}
