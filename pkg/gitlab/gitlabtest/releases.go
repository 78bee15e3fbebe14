package gitlabtest

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Release is a release of a project, as the Releases API made it.
type Release struct {
	ProjectID   int64
	TagName     string
	TagMessage  string // the message of the tag the release created, if any
	Name        string // the tag name when none was given
	Description string
	Ref         string // as given, "" when the tag existed
	SHA         string // the commit the tag points at
	Milestones  []string
	ReleasedAt  time.Time
	CreatedAt   time.Time
	Links       []gitlab.ReleaseLink
	// JobID is the job whose token created the release; 0 for a user.
	JobID int64
	// CreatedTag is true when the release created its tag (from Ref).
	CreatedTag bool
}

// AddMilestone creates an open milestone titled title in the project, for
// releases to name.
func (p *Project) AddMilestone(title string) {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	if !slices.Contains(p.milestones, title) {
		p.milestones = append(p.milestones, title)
	}
}

// Releases returns the project's releases, oldest first.
func (s *Server) Releases(p *Project) []Release {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Release
	for _, r := range s.releases {
		if r.ProjectID == p.ID {
			out = append(out, cloneRelease(r))
		}
	}
	return out
}

func cloneRelease(r Release) Release {
	r.Milestones = slices.Clone(r.Milestones)
	r.Links = slices.Clone(r.Links)
	return r
}

// projectFromPathLocked finds the project named by the {id} path value:
// a numeric id or a URL-encoded full path.
func (s *Server) projectFromPathLocked(r *http.Request) *Project {
	id := r.PathValue("id")
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		return s.projects[n]
	}
	for _, p := range s.projects {
		if p.Path == id {
			return p
		}
	}
	return nil
}

// jobTokenForProjectLocked returns the running job whose token is token and
// that may act on project p (its own project, or one that allows it).
func (s *Server) jobTokenForProjectLocked(token string, p *Project) *jobState {
	if token == "" || p == nil {
		return nil
	}
	for _, j := range s.jobs {
		if j.Token == token && !j.awaitingAck && (j.State == statusRunning || j.State == statusCanceling) &&
			(j.ProjectID == p.ID || p.allowed[j.ProjectID]) {
			return j
		}
	}
	return nil
}

// releaseCaller finds the project of a Releases API request and who calls:
// the running job whose token is the JOB-TOKEN (nil for a user's token). It
// answers 404 for an unknown project and 401 without a valid token, and
// then reports false.
func (s *Server) releaseCaller(w http.ResponseWriter, r *http.Request) (*Project, *jobState, bool) {
	u := s.userFromRequest(r)
	s.mu.Lock()
	p := s.projectFromPathLocked(r)
	j := s.jobTokenForProjectLocked(jobToken(r), p)
	s.mu.Unlock()
	if p == nil {
		writeMessage(w, http.StatusNotFound, "404 Project Not Found")
		return nil, nil, false
	}
	if j == nil && u == nil {
		writeMessage(w, http.StatusUnauthorized, "401 Unauthorized")
		return nil, nil, false
	}
	return p, j, true
}

// handleCreateRelease is POST /api/v4/projects/:id/releases, authenticated
// with the JOB-TOKEN of a job running on the project (as a release step
// does) or a user's token. As GitLab: 401 without a valid token, 400 without
// tag_name, 409 when the tag has a release, 422 when the tag does not exist
// and no ref says where to create it, or a milestone does not exist.
func (s *Server) handleCreateRelease(w http.ResponseWriter, r *http.Request) {
	p, j, ok := s.releaseCaller(w, r)
	if !ok {
		return
	}
	var body gitlab.ReleaseRequest
	if !s.decodeJSON(w, r, EndpointCreateRelease, &body) {
		return
	}
	if strings.TrimSpace(body.TagName) == "" {
		writeError(w, http.StatusBadRequest, "tag_name is missing")
		return
	}
	var links []gitlab.ReleaseLink
	if body.Assets != nil {
		links = body.Assets.Links
	}
	for _, l := range links {
		if l.Name == "" || l.URL == "" {
			writeMessage(w, http.StatusBadRequest, "Validation failed: Links is invalid")
			return
		}
	}
	s.mu.Lock()
	exists := slices.ContainsFunc(s.releases, func(rel Release) bool { return rel.ProjectID == p.ID && rel.TagName == body.TagName })
	var missing []string
	for _, m := range body.Milestones {
		if !slices.Contains(p.milestones, m) {
			missing = append(missing, m)
		}
	}
	s.mu.Unlock()
	if exists {
		writeMessage(w, http.StatusConflict, "Release already exists")
		return
	}
	if len(missing) > 0 {
		writeMessage(w, http.StatusBadRequest, "Milestone(s) not found: "+strings.Join(missing, ", "))
		return
	}
	rel := Release{
		ProjectID: p.ID, TagName: body.TagName, Name: body.Name, Description: body.Description,
		Ref: body.Ref, Milestones: body.Milestones, Links: links, CreatedAt: time.Now().UTC(),
	}
	if j != nil {
		rel.JobID = j.ID
	}
	if rel.Name == "" {
		rel.Name = rel.TagName
	}
	rel.ReleasedAt = rel.CreatedAt
	if body.ReleasedAt != nil {
		rel.ReleasedAt = body.ReleasedAt.UTC()
	}
	if p.HasTag(body.TagName) {
		rel.SHA = p.RefSHA("refs/tags/" + body.TagName)
	} else {
		if body.Ref == "" {
			writeMessage(w, http.StatusUnprocessableEntity, "Ref is not specified")
			return
		}
		sha, err := p.resolve(body.Ref)
		if err != nil {
			writeMessage(w, http.StatusUnprocessableEntity, "Ref is invalid")
			return
		}
		if err := p.createTag(body.TagName, sha, body.TagMessage); err != nil {
			writeMessage(w, http.StatusBadRequest, "Tag name invalid")
			return
		}
		rel.SHA, rel.TagMessage, rel.CreatedTag = sha, body.TagMessage, true
	}
	s.mu.Lock()
	s.releases = append(s.releases, rel)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, s.releaseJSON(p, rel))
}

// handleListReleases is GET /api/v4/projects/:id/releases, newest first,
// for a user's token or a running job's token of the project.
func (s *Server) handleListReleases(w http.ResponseWriter, r *http.Request) {
	p, _, ok := s.releaseCaller(w, r)
	if !ok {
		return
	}
	rels := s.Releases(p)
	out := make([]map[string]any, 0, len(rels))
	for i := len(rels) - 1; i >= 0; i-- {
		out = append(out, s.releaseJSON(p, rels[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) releaseJSON(p *Project, rel Release) map[string]any {
	links := make([]map[string]any, 0, len(rel.Links))
	for i, l := range rel.Links {
		typ := l.LinkType
		if typ == "" {
			typ = "other"
		}
		link := map[string]any{"id": i + 1, "name": l.Name, "url": l.URL, "link_type": typ, "direct_asset_url": l.URL}
		if path := cmp.Or(l.DirectAssetPath, l.Filepath); path != "" {
			link["direct_asset_url"] = fmt.Sprintf("%s/%s/-/releases/%s/downloads%s", s.URL(), p.Path, rel.TagName, path)
		}
		links = append(links, link)
	}
	milestones := make([]map[string]any, 0, len(rel.Milestones))
	for _, m := range rel.Milestones {
		milestones = append(milestones, map[string]any{"title": m, "state": "active"})
	}
	return map[string]any{
		"tag_name": rel.TagName, "name": rel.Name, "description": rel.Description,
		"created_at": rel.CreatedAt.Format(time.RFC3339), "released_at": rel.ReleasedAt.Format(time.RFC3339),
		"commit":     map[string]any{"id": rel.SHA},
		"milestones": milestones,
		"assets":     map[string]any{"count": len(links), "links": links},
		"_links":     map[string]any{"self": fmt.Sprintf("%s/%s/-/releases/%s", s.URL(), p.Path, rel.TagName)},
	}
}

// resolve turns a branch, tag or sha of the project into a commit sha.
func (p *Project) resolve(ref string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, full := range []string{"refs/heads/" + ref, "refs/tags/" + ref} {
		if _, ok := p.readRef(full); ok {
			return runGit(p.srv.dir, p.bare, "rev-parse", "--verify", "-q", full+"^{commit}")
		}
	}
	return runGit(p.srv.dir, p.bare, "rev-parse", "--verify", "-q", ref+"^{commit}")
}

// createTag creates tag name at sha: annotated with message when message
// is set, lightweight otherwise.
func (p *Project) createTag(name, sha, message string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := runGit(p.srv.dir, p.bare, "check-ref-format", "refs/tags/"+name); err != nil {
		return err
	}
	args := []string{"tag", name, sha}
	if message != "" {
		args = []string{"tag", "-a", "-m", message, name, sha}
	}
	if _, err := runGit(p.srv.dir, p.work, args...); err != nil {
		return err
	}
	if message == "" {
		if p.lightweight == nil {
			p.lightweight = map[string]bool{}
		}
		p.lightweight[name] = true
	}
	return nil
}
