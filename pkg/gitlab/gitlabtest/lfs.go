package gitlabtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// lfsMediaType is the media type of Git LFS batch requests and answers.
const lfsMediaType = "application/vnd.git-lfs+json"

// LFSPointer returns the Git LFS pointer file that stands for content in a
// repository: what a clone without LFS support checks out.
func LFSPointer(content string) string {
	sum := sha256.Sum256([]byte(content))
	return fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", hex.EncodeToString(sum[:]), len(content))
}

// CommitLFS commits files (path → content) on the default branch as Git
// LFS objects, as `git lfs track` and `git add` would: each file becomes a
// pointer file, .gitattributes marks it filter=lfs, and the content is
// stored on the server for the LFS batch API. It returns the new sha.
func (p *Project) CommitLFS(files map[string]string, message string) string {
	p.srv.t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	p.mu.Lock()
	attrs := p.readWorkFile(".gitattributes")
	p.mu.Unlock()
	commit := map[string]string{}
	p.srv.mu.Lock()
	if p.srv.lfsObjects == nil {
		p.srv.lfsObjects = map[int64]map[string][]byte{}
	}
	if p.srv.lfsObjects[p.ID] == nil {
		p.srv.lfsObjects[p.ID] = map[string][]byte{}
	}
	for _, name := range names {
		sum := sha256.Sum256([]byte(files[name]))
		p.srv.lfsObjects[p.ID][hex.EncodeToString(sum[:])] = []byte(files[name])
		commit[name] = LFSPointer(files[name])
		line := name + " filter=lfs diff=lfs merge=lfs -text\n"
		if !strings.Contains(attrs, line) {
			attrs += line
		}
	}
	p.srv.mu.Unlock()
	commit[".gitattributes"] = attrs
	return p.Commit("", commit, message)
}

// readWorkFile reads a file of the work tree commits are made in; "" when
// it does not exist.
func (p *Project) readWorkFile(name string) string {
	b, err := os.ReadFile(filepath.Join(p.work, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	return string(b)
}

type lfsObject struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

type lfsBatchRequest struct {
	Operation string      `json:"operation"`
	Transfers []string    `json:"transfers"`
	Objects   []lfsObject `json:"objects"`
	HashAlgo  string      `json:"hash_algo"`
}

// serveLFS answers the Git LFS batch API (POST
// <project>.git/info/lfs/objects/batch) and the object downloads its
// answers point at (GET <project>.git/gitlab-lfs/objects/<oid>), for the
// holder of a job token that may read the project, as GitLab does. It
// reports false for any other path.
func (s *Server) serveLFS(w http.ResponseWriter, r *http.Request, projectPath, rest string, tokenOK bool) bool {
	switch {
	case rest == "info/lfs/objects/batch":
		if r.Method != http.MethodPost {
			writeMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
			return true
		}
		s.lfsBatch(w, r, projectPath, tokenOK)
		return true
	case strings.HasPrefix(rest, "gitlab-lfs/objects/"):
		oid := strings.TrimPrefix(rest, "gitlab-lfs/objects/")
		if !tokenOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
			http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
			return true
		}
		content, ok := s.lfsContent(projectPath, oid)
		if !ok {
			writeMessage(w, http.StatusNotFound, "404 Not Found")
			return true
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(content)
		return true
	case strings.HasPrefix(rest, "info/lfs/"):
		writeMessage(w, http.StatusNotFound, "404 Not Found")
		return true
	}
	return false
}

func (s *Server) lfsContent(projectPath, oid string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.projects {
		if p.Path == projectPath {
			b, ok := s.lfsObjects[p.ID][oid]
			return b, ok
		}
	}
	return nil, false
}

func (s *Server) lfsBatch(w http.ResponseWriter, r *http.Request, projectPath string, tokenOK bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != lfsMediaType {
		s.violate("LFS batch: Content-Type %q, want %s", r.Header.Get("Content-Type"), lfsMediaType)
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Accept")); mt != lfsMediaType {
		s.violate("LFS batch: Accept %q, want %s", r.Header.Get("Accept"), lfsMediaType)
	}
	if !tokenOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
		w.Header().Set("Content-Type", lfsMediaType)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"Access forbidden. Check your access level."}`))
		return
	}
	var req lfsBatchRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.violate("LFS batch: body is not JSON: %v", err)
		writeMessage(w, http.StatusUnprocessableEntity, "Unprocessable Entity")
		return
	}
	if req.Operation != "download" {
		// A job token may only download.
		w.Header().Set("Content-Type", lfsMediaType)
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"Access forbidden. Check your access level."}`))
		return
	}
	if len(req.Transfers) > 0 && !slices.Contains(req.Transfers, "basic") {
		s.violate("LFS batch: transfers %v without basic", req.Transfers)
	}
	if req.HashAlgo != "" && req.HashAlgo != "sha256" {
		s.violate("LFS batch: hash_algo %q", req.HashAlgo)
	}
	auth := r.Header.Get("Authorization")
	base := s.URL() + "/" + projectPath + ".git/gitlab-lfs/objects/"
	objects := make([]map[string]any, 0, len(req.Objects))
	for _, o := range req.Objects {
		content, ok := s.lfsContent(projectPath, o.OID)
		if !ok || int64(len(content)) != o.Size {
			objects = append(objects, map[string]any{"oid": o.OID, "size": o.Size,
				"error": map[string]any{"code": 404, "message": "Object does not exist on the server or you don't have permissions to access it"}})
			continue
		}
		objects = append(objects, map[string]any{"oid": o.OID, "size": o.Size, "authenticated": true,
			"actions": map[string]any{"download": map[string]any{
				"href": base + o.OID, "header": map[string]string{"Authorization": auth}, "expires_in": 3600,
			}}})
	}
	w.Header().Set("Content-Type", lfsMediaType)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]any{"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
}
