package gitlabtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

var artifactFormats = map[string]string{
	gitlab.ArtifactFormatZip:  ".zip",
	gitlab.ArtifactFormatGzip: ".gz",
	gitlab.ArtifactFormatRaw:  "",
	"zipzstd":                 ".zip",
	"tarzstd":                 ".tar.zst",
}

var errTooLarge = errors.New("artifact too large")

func (s *Server) handleUploadArtifacts(w http.ResponseWriter, r *http.Request) {
	token := jobToken(r)
	s.mu.Lock()
	j := s.jobFromPathLocked(r)
	ok := j != nil && token != "" && token == j.Token && !j.awaitingAck &&
		(j.State == statusRunning || j.State == statusCanceling)
	var id int64
	if j != nil {
		id = j.ID
	}
	if token == "" {
		s.violateLocked("POST %s: no JOB-TOKEN", r.URL.Path)
	}
	s.mu.Unlock()
	if !ok {
		_, _ = io.Copy(io.Discard, r.Body)
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	q := r.URL.Query()
	typ, format := q.Get("artifact_type"), q.Get("artifact_format")
	if typ == "" {
		typ = gitlab.ArtifactTypeArchive
	}
	if format == "" {
		format = gitlab.ArtifactFormatZip
	}
	ext, known := artifactFormats[format]
	if !known {
		_, _ = io.Copy(io.Discard, r.Body)
		writeMessage(w, http.StatusBadRequest, "400 Bad request - artifact_format is invalid")
		return
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" || params["boundary"] == "" {
		s.violate("POST %s: Content-Type %q, want multipart/form-data", r.URL.Path, r.Header.Get("Content-Type"))
		_, _ = io.Copy(io.Discard, r.Body)
		writeMessage(w, http.StatusBadRequest, "400 Bad request - file is missing")
		return
	}
	dir := filepath.Join(s.dir, "artifacts", strconv.FormatInt(id, 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		writeMessage(w, http.StatusInternalServerError, "500 Internal Server Error")
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var stored []UploadedArtifact
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.violate("POST %s: malformed multipart body: %v", r.URL.Path, err)
			writeMessage(w, http.StatusBadRequest, "400 Bad request - malformed multipart body")
			return
		}
		if part.FormName() != "file" {
			s.violate("POST %s: unexpected multipart part %q (only \"file\" is sent)", r.URL.Path, part.FormName())
			_, _ = io.Copy(io.Discard, part)
			continue
		}
		f, err := os.CreateTemp(dir, "upload-*")
		if err != nil {
			writeMessage(w, http.StatusInternalServerError, "500 Internal Server Error")
			return
		}
		n, err := copyLimited(f, part, s.cfg.MaxArtifactSize)
		_ = f.Close()
		if errors.Is(err, errTooLarge) {
			_ = os.Remove(f.Name())
			_, _ = io.Copy(io.Discard, r.Body)
			writeMessage(w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large")
			return
		}
		if err != nil {
			_ = os.Remove(f.Name())
			writeMessage(w, http.StatusBadRequest, "400 Bad request - cannot read file")
			return
		}
		name := part.FileName()
		if name == "" {
			s.violate("POST %s: file part without a file name", r.URL.Path)
		} else if ext != "" && !strings.HasSuffix(name, ext) {
			s.violate("POST %s: file name %q does not end in %q for format %s", r.URL.Path, name, ext, format)
		}
		stored = append(stored, UploadedArtifact{
			Type: typ, Format: format, ExpireIn: q.Get("expire_in"), Filename: name, Size: n, Path: f.Name(),
		})
	}
	if len(stored) != 1 {
		s.violate("POST %s: %d \"file\" parts, want exactly one", r.URL.Path, len(stored))
		writeMessage(w, http.StatusBadRequest, "400 Bad request - file is missing")
		return
	}
	s.mu.Lock()
	if j.Token != token || j.final() {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	j.Artifacts = append(j.Artifacts, stored[0])
	s.notifyLocked()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, "201")
}

// copyLimited copies src to dst, failing with errTooLarge beyond limit
// bytes (no limit when limit <= 0).
func copyLimited(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	if limit <= 0 {
		return io.Copy(dst, src)
	}
	n, err := io.Copy(dst, io.LimitReader(src, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, errTooLarge
	}
	return n, nil
}

// handleDownloadArtifacts serves a job's archive to a running job's token,
// directly or (direct_download=true) through a redirect to object storage.
func (s *Server) handleDownloadArtifacts(w http.ResponseWriter, r *http.Request) {
	token := jobToken(r)
	s.mu.Lock()
	allowed := false
	if token == "" {
		s.violateLocked("GET %s: no JOB-TOKEN", r.URL.Path)
	}
	var reader *jobState
	for _, j := range s.jobs {
		if j.Token == token && token != "" {
			reader = j
			break
		}
	}
	target := s.jobFromPathLocked(r)
	if reader != nil && !reader.awaitingAck && (reader.State == statusRunning || reader.State == statusCanceling) {
		allowed = target == nil || target.ProjectID == reader.ProjectID || reader.ID == target.ID
	}
	var art UploadedArtifact
	found := false
	if target != nil {
		art, found = target.Artifact(gitlab.ArtifactTypeArchive)
	}
	var key string
	if allowed && found && r.URL.Query().Get("direct_download") == "true" {
		key = randomHex(8) + "/" + filepath.Base(art.Filename)
		s.objects[key] = target.ID
	}
	s.mu.Unlock()
	switch {
	case !allowed:
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
	case !found:
		writeMessage(w, http.StatusNotFound, "404 Not Found")
	case key != "":
		expires := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		loc := fmt.Sprintf("%s/objects/%s?X-Amz-Expires=3600&Expires=%s&X-Amz-Signature=%s",
			s.URL(), key, expires, s.signature(key, expires))
		http.Redirect(w, r, loc, http.StatusFound)
	default:
		serveArtifact(w, r, art)
	}
}

func (s *Server) signature(key, expires string) string {
	m := hmac.New(sha256.New, []byte(s.sign))
	m.Write([]byte(key + "\n" + expires))
	return hex.EncodeToString(m.Sum(nil))
}

// handleObjectStorage plays the object store behind "presigned" URLs: it
// needs no token, only a valid signature.
func (s *Server) handleObjectStorage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	expires := q.Get("Expires")
	exp, _ := strconv.ParseInt(expires, 10, 64)
	if !hmac.Equal([]byte(q.Get("X-Amz-Signature")), []byte(s.signature(key, expires))) || time.Now().Unix() > exp {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired or signature does not match</Message></Error>`)
		return
	}
	s.mu.Lock()
	var art UploadedArtifact
	found := false
	if id, ok := s.objects[key]; ok {
		art, found = s.jobs[id].Artifact(gitlab.ArtifactTypeArchive)
	}
	s.mu.Unlock()
	if !found {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>`)
		return
	}
	serveArtifact(w, r, art)
}

func serveArtifact(w http.ResponseWriter, r *http.Request, art UploadedArtifact) {
	f, err := os.Open(art.Path)
	if err != nil {
		writeMessage(w, http.StatusNotFound, "404 Not Found")
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", filepath.Base(art.Filename)))
	w.Header().Set("Content-Length", strconv.FormatInt(art.Size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, f)
	}
}
