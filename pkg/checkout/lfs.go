package checkout

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitattributes"
	"github.com/go-git/go-git/v5/plumbing/format/index"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Git LFS: go-git checks out the pointer files that stand for large files.
// After a checkout, as gitlab-runner runs `git lfs pull`, the pointers of
// files whose attributes say filter=lfs are replaced by their objects,
// downloaded through the repository's LFS batch API
// (<repository>.git/info/lfs/objects/batch, "basic" transfers) with the job's
// credentials. Objects are kept in .git/lfs/objects/<oid[0:2]>/<oid[2:4]>/
// as git-lfs keeps them, so a fetch into a reused repository downloads only
// what it lacks.

const (
	lfsMediaType     = "application/vnd.git-lfs+json"
	lfsPointerMax    = 1024 // git-lfs never reads a larger file as a pointer
	lfsBatchSize     = 100  // objects per batch request, as git-lfs sends them
	lfsMaxBatchReply = 16 << 20
	lfsVersionLine   = "version https://git-lfs.github.com/spec/v1"
)

// lfsPointer is one pointer file of the work tree.
type lfsPointer struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

// lfsFile is a work tree file that is a pointer.
type lfsFile struct {
	name string // slash path in the work tree
	mode os.FileMode
	lfsPointer
}

// parseLFSPointer reads a Git LFS pointer (spec v1): ok is false for
// anything else.
func parseLFSPointer(b []byte) (lfsPointer, bool) {
	if len(b) > lfsPointerMax || !bytes.HasPrefix(b, []byte(lfsVersionLine+"\n")) {
		return lfsPointer{}, false
	}
	var p lfsPointer
	sizeSeen := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "oid":
			hexOID, ok := strings.CutPrefix(v, "sha256:")
			if !ok || len(hexOID) != 64 {
				return lfsPointer{}, false
			}
			if _, err := hex.DecodeString(hexOID); err != nil {
				return lfsPointer{}, false
			}
			p.OID = hexOID
		case "size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return lfsPointer{}, false
			}
			p.Size, sizeSeen = n, true
		}
	}
	return p, p.OID != "" && sizeSeen
}

// lfsFiles lists the files of the checked-out tree at root whose
// attributes say filter=lfs and whose content is a pointer.
func lfsFiles(r *git.Repository, root string) ([]lfsFile, error) {
	idx, err := r.Storer.Index()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	matcher, ok, err := lfsAttributes(root, idx)
	if err != nil || !ok {
		return nil, err
	}
	var out []lfsFile
	for _, e := range idx.Entries {
		if e.Mode != filemode.Regular && e.Mode != filemode.Executable {
			continue
		}
		attrs, _ := matcher.Match(strings.Split(e.Name, "/"), []string{"filter"})
		if a, ok := attrs["filter"]; !ok || a.Value() != "lfs" {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(e.Name))
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > lfsPointerMax {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Name, err)
		}
		if ptr, ok := parseLFSPointer(b); ok {
			out = append(out, lfsFile{name: e.Name, mode: fi.Mode().Perm(), lfsPointer: ptr})
		}
	}
	return out, nil
}

// lfsAttributes reads the .gitattributes files of the index, parents
// before children; ok is false when none mentions filter=lfs.
func lfsAttributes(root string, idx *index.Index) (gitattributes.Matcher, bool, error) {
	var files []string
	for _, e := range idx.Entries {
		if e.Name == ".gitattributes" || strings.HasSuffix(e.Name, "/.gitattributes") {
			files = append(files, e.Name)
		}
	}
	slices.SortFunc(files, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	var stack []gitattributes.MatchAttribute
	mentioned := false
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte("filter=lfs")) {
			mentioned = true
		}
		var domain []string
		if dir := path.Dir(name); dir != "." {
			domain = strings.Split(dir, "/")
		}
		attrs, err := gitattributes.ReadAttributes(bytes.NewReader(b), domain, len(domain) == 0)
		if err != nil {
			return nil, false, fmt.Errorf("read %s: %w", name, err)
		}
		stack = append(stack, attrs...)
	}
	return gitattributes.NewMatcher(stack), mentioned, nil
}

// lfsEndpoint is the LFS API of a repository, as git-lfs derives it from
// the remote URL: <url>/info/lfs for a URL ending in .git, else
// <url>.git/info/lfs.
func lfsEndpoint(repoURL string) (*url.URL, error) {
	u, err := url.Parse(repoURL)
	if err != nil {
		return nil, errors.New("parse repository URL: not a valid URL")
	}
	u = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
	if !strings.HasSuffix(u.Path, ".git") {
		u.Path += ".git"
	}
	u.Path += "/info/lfs"
	return u, nil
}

// pullLFS replaces the LFS pointer files in the work tree of r (at root),
// whose remote is repoURL, by their content.
func (g *getter) pullLFS(r *git.Repository, root, repoURL, display string) error {
	files, err := lfsFiles(r, root)
	if err != nil || len(files) == 0 {
		return err
	}
	gitDir := filepath.Join(root, ".git")
	if fi, err := os.Stat(gitDir); err != nil || !fi.IsDir() {
		// A submodule's git directory lives in the superproject's.
		if gitDir, err = submoduleGitDir(root); err != nil {
			return err
		}
	}
	store := filepath.Join(gitDir, "lfs", "objects")
	var missing []lfsPointer
	seen := map[string]bool{}
	var total int64
	for _, f := range files {
		if seen[f.OID] {
			continue
		}
		seen[f.OID] = true
		total += f.Size
		if _, err := os.Stat(lfsObjectPath(store, f.OID)); err != nil {
			missing = append(missing, f.lfsPointer)
		}
	}
	if len(missing) > 0 {
		endpoint, err := lfsEndpoint(repoURL)
		if err != nil {
			return err
		}
		for chunk := range slices.Chunk(missing, lfsBatchSize) {
			if err := g.downloadLFS(endpoint, store, chunk); err != nil {
				return fmt.Errorf("download LFS objects of %s: %w", display, err)
			}
		}
	}
	for _, f := range files {
		if err := placeLFSObject(store, root, f); err != nil {
			return fmt.Errorf("check out LFS object of %s: %w", f.name, err)
		}
	}
	fmt.Fprintf(g.out, "Downloading LFS objects: 100%% (%d/%d), %s, done.\n", len(seen), len(seen), byteSize(total))
	return nil
}

// submoduleGitDir reads the "gitdir: " line of a work tree's .git file.
func submoduleGitDir(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, ".git"))
	if err != nil {
		return "", fmt.Errorf("find git directory: %w", err)
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
	if !ok {
		return "", errors.New("find git directory: .git is neither a directory nor a gitdir file")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	return dir, nil
}

func lfsObjectPath(store, oid string) string {
	return filepath.Join(store, oid[0:2], oid[2:4], oid)
}

// byteSize formats n bytes as git-lfs prints sizes.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// lfsBatchAnswer is the LFS batch API's answer.
type lfsBatchAnswer struct {
	Transfer string `json:"transfer"`
	Objects  []struct {
		OID     string `json:"oid"`
		Size    int64  `json:"size"`
		Actions struct {
			Download *struct {
				Href   string            `json:"href"`
				Header map[string]string `json:"header"`
			} `json:"download"`
		} `json:"actions"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"objects"`
	Message string `json:"message"`
}

// downloadLFS asks the batch API at endpoint for objects and stores each
// in store, checked against its oid and size.
func (g *getter) downloadLFS(endpoint *url.URL, store string, objects []lfsPointer) error {
	body, err := json.Marshal(map[string]any{
		"operation": "download", "transfers": []string{"basic"}, "objects": objects, "hash_algo": "sha256",
		"ref": map[string]string{"name": refName(g.o.Git)},
	})
	if err != nil {
		return fmt.Errorf("encode batch request: %w", err)
	}
	batchURL := endpoint.String() + "/objects/batch"
	req, err := http.NewRequestWithContext(g.ctx, http.MethodPost, batchURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("batch request: %w", err)
	}
	req.Header.Set("Accept", lfsMediaType)
	req.Header.Set("Content-Type", lfsMediaType)
	g.setAuth(req, nil)
	resp, err := lfsHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("batch request to %s: %w", endpoint.String(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, lfsMaxBatchReply+1))
	if err != nil {
		return fmt.Errorf("batch request to %s: read answer: %w", endpoint.String(), err)
	}
	var answer lfsBatchAnswer
	jsonErr := json.Unmarshal(raw, &answer)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("batch request to %s: %d %s: the server refused the job's credentials", endpoint.String(), resp.StatusCode, http.StatusText(resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("batch request to %s: %d %s %s", endpoint.String(), resp.StatusCode, http.StatusText(resp.StatusCode), answer.Message)
	case len(raw) > lfsMaxBatchReply || jsonErr != nil:
		return fmt.Errorf("batch request to %s: the answer is not a batch answer", endpoint.String())
	case answer.Transfer != "" && answer.Transfer != "basic":
		return fmt.Errorf("batch request to %s: transfer %q is not supported, only basic", endpoint.String(), answer.Transfer)
	}
	want := map[string]lfsPointer{}
	for _, o := range objects {
		want[o.OID] = o
	}
	for _, o := range answer.Objects {
		ptr, asked := want[o.OID]
		if !asked {
			continue
		}
		switch {
		case o.Error != nil:
			return fmt.Errorf("object %s: %s (%d)", o.OID, o.Error.Message, o.Error.Code)
		case o.Actions.Download == nil:
			// No download action: the server says we have it already,
			// which a fresh work tree cannot.
			return fmt.Errorf("object %s: the server gave no download for it", o.OID)
		}
		if err := g.fetchLFSObject(store, ptr, o.Actions.Download.Href, o.Actions.Download.Header); err != nil {
			return fmt.Errorf("object %s: %w", o.OID, err)
		}
		delete(want, o.OID)
	}
	for oid := range want {
		return fmt.Errorf("object %s: missing from the server's answer", oid)
	}
	return nil
}

// setAuth authenticates an LFS request: with the action's own headers
// when it has them, else with the job's credentials, which are sent only
// to the repository's own scheme and host.
func (g *getter) setAuth(req *http.Request, header map[string]string) {
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Authorization") != "" {
		return
	}
	if a := g.remote.auth(req.URL.String()); a != nil {
		req.SetBasicAuth(g.remote.username, g.remote.password)
	}
}

// fetchLFSObject downloads one object from href into the store, through a
// temporary file renamed into place once its sha256 and size match.
func (g *getter) fetchLFSObject(store string, ptr lfsPointer, href string, header map[string]string) error {
	u, err := url.Parse(href)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("the download link is not an http(s) URL")
	}
	req, err := http.NewRequestWithContext(g.ctx, http.MethodGet, href, nil)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	g.setAuth(req, header)
	resp, err := lfsHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("download: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download: %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	dst := lfsObjectPath(store, ptr.OID)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create object store: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "incomplete-*")
	if err != nil {
		return fmt.Errorf("create object file: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, ptr.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if n != ptr.Size || hex.EncodeToString(h.Sum(nil)) != ptr.OID {
		return fmt.Errorf("download: the content does not match the pointer (%d bytes, want %d with that sha256)", n, ptr.Size)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("store object: %w", err)
	}
	return nil
}

// placeLFSObject writes the stored object over the pointer file f,
// keeping its mode.
func placeLFSObject(store, root string, f lfsFile) error {
	src, err := os.Open(lfsObjectPath(store, f.OID))
	if err != nil {
		return err
	}
	defer src.Close()
	dst := filepath.Join(root, filepath.FromSlash(f.name))
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".lfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), f.mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	return err
}

// refName is the ref the job builds, as a full ref name for the batch
// request.
func refName(gi gitlab.GitInfo) string {
	if gi.RefType == "tag" {
		return "refs/tags/" + gi.Ref
	}
	return "refs/heads/" + gi.Ref
}

// lfsHTTP sends LFS requests through the transport Get put in the
// request's context (Options.HTTPClient and Options.CAPEM), as git's own.
var lfsHTTP = &http.Client{Transport: contextRoundTripper{}}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
