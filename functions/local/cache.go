package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/poller"
)

// cachePath is where the local cache store answers, on the UI's listener.
const cachePath = "/_local/cache"

// localCache stands in for the S3 bucket of a deployment: cache archives
// are files under dir, read and written through URLs this process signs,
// so the executor gets the same pre-signed URLs it gets on Lambda.
type localCache struct {
	dir    string
	base   string // the UI's URL
	secret []byte
}

var _ poller.Presigner = (*localCache)(nil)

func newLocalCache(dir, base string) (*localCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: create cache directory: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("local: make cache URL key: %w", err)
	}
	return &localCache{dir: dir, base: base, secret: secret}, nil
}

// PresignGet implements poller.Presigner.
func (c *localCache) PresignGet(_ context.Context, key string, ttl time.Duration) (string, error) {
	return c.sign(http.MethodGet, key, ttl)
}

// PresignPut implements poller.Presigner.
func (c *localCache) PresignPut(_ context.Context, key string, ttl time.Duration) (string, error) {
	return c.sign(http.MethodPut, key, ttl)
}

func (c *localCache) sign(method, key string, ttl time.Duration) (string, error) {
	if _, err := c.file(key); err != nil {
		return "", err
	}
	exp := strconv.FormatInt(time.Now().Add(ttl).Unix(), 10)
	q := url.Values{"key": {key}, "method": {method}, "expires": {exp}, "signature": {c.mac(method, key, exp)}}
	return c.base + cachePath + "?" + q.Encode(), nil
}

func (c *localCache) mac(method, key, exp string) string {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(method + "\n" + key + "\n" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// file maps an object key to its file, refusing keys that would leave dir.
func (c *localCache) file(key string) (string, error) {
	if key == "" || !filepath.IsLocal(key) || strings.Contains(key, "\\") {
		return "", errors.New("local: cache key is not a relative path")
	}
	return filepath.Join(c.dir, filepath.FromSlash(key)), nil
}

// ServeHTTP serves GET and PUT on signed URLs, as S3 does for pre-signed
// ones: 403 for a bad or expired signature, 404 for a missing object.
func (c *localCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key, method, exp := q.Get("key"), q.Get("method"), q.Get("expires")
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || method != r.Method || time.Now().Unix() > n ||
		!hmac.Equal([]byte(q.Get("signature")), []byte(c.mac(method, key, exp))) {
		http.Error(w, "signature does not match or has expired", http.StatusForbidden)
		return
	}
	path, err := c.file(key)
	if err != nil {
		http.Error(w, "bad key", http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet:
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(w, "no such key", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, "cannot read the object", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, f)
	case http.MethodPut:
		if err := c.put(path, r.Body); err != nil {
			http.Error(w, "cannot store the object", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// put writes the object through a temporary file, so a reader never sees
// half an archive.
func (c *localCache) put(path string, body io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
