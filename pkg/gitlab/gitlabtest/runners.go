package gitlabtest

import (
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// RunnerOptions describes a runner made with CreateRunner. The zero value is
// an instance runner that runs untagged jobs on any ref.
type RunnerOptions struct {
	Type            string // gitlab.RunnerType*; "" means instance_type
	ProjectID       int64  // for project_type
	GroupID         int64  // for group_type (a project's NamespaceID)
	Description     string
	MaintenanceNote string
	Tags            []string
	NoUntagged      bool   // run_untagged=false
	Locked          bool   // informational
	Paused          bool   // job requests get 204
	AccessLevel     string // gitlab.Access*; "" means not_protected
	MaximumTimeout  int    // seconds; caps job timeouts when positive
}

// Manager is a runner manager: one per system_id seen by verify or job
// requests.
type Manager struct {
	SystemID    string
	Info        gitlab.Info // the last info sent
	ContactedAt time.Time
}

// Runner is a snapshot of a runner as GitLab stores it.
type Runner struct {
	ID              int64
	Token           string
	TokenExpiresAt  *time.Time
	Type            string
	ProjectID       int64
	GroupID         int64
	Description     string
	MaintenanceNote string
	Tags            []string
	RunUntagged     bool
	Locked          bool
	Paused          bool
	AccessLevel     string
	MaximumTimeout  int
	// Legacy is true for runners registered with a registration token.
	Legacy bool
	// Info is what the runner sent when it registered (legacy only).
	Info gitlab.Info
	// CreatedBy is the username that created it with POST /user/runners.
	CreatedBy string
	// Managers are the runner managers seen, sorted by system id.
	Managers []Manager
	// Deleted is true after DELETE /runners.
	Deleted bool
	// ContactedAt is the last authenticated runner call.
	ContactedAt time.Time
}

type runnerState struct {
	Runner
	managers map[string]*Manager
	version  string // queue version (X-GitLab-Last-Update)
}

func (r *runnerState) snapshot() Runner {
	out := r.Runner
	out.Tags = slices.Clone(r.Tags)
	if r.TokenExpiresAt != nil {
		e := *r.TokenExpiresAt
		out.TokenExpiresAt = &e
	}
	out.Managers = nil
	for _, m := range r.managers {
		out.Managers = append(out.Managers, *m)
	}
	slices.SortFunc(out.Managers, func(a, b Manager) int { return strings.Compare(a.SystemID, b.SystemID) })
	return out
}

// User is a GitLab user with a personal access token and an OAuth access
// token, both accepted by POST /user/runners and the user APIs.
type User struct {
	ID         int64
	Username   string
	PAT        string // "glpat-…", sent as PRIVATE-TOKEN
	OAuthToken string // sent as Authorization: Bearer
	Admin      bool   // may create instance_type runners
	// Projects are the ids of the projects the user maintains.
	Projects []int64
}

type user struct{ User }

// AddUser creates a user who maintains the given projects.
func (s *Server) AddUser(username string, projects ...*Project) User {
	return s.addUser(username, false, projects)
}

// AddAdmin creates an administrator (may create instance runners).
func (s *Server) AddAdmin(username string) User { return s.addUser(username, true, nil) }

// AddPAT creates a user maintaining projects and returns its personal
// access token.
func (s *Server) AddPAT(username string, projects ...*Project) string {
	return s.AddUser(username, projects...).PAT
}

func (s *Server) addUser(username string, admin bool, projects []*Project) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &user{User{
		ID: s.newIDLocked(), Username: username, Admin: admin,
		PAT: "glpat-" + randomAlnum(20), OAuthToken: randomHex(32),
	}}
	for _, p := range projects {
		u.Projects = append(u.Projects, p.ID)
	}
	s.users[u.PAT] = u
	s.users[u.OAuthToken] = u
	return u.User
}

// RegistrationToken is the instance's legacy registration token.
func (s *Server) RegistrationToken() string { return s.registrationToken }

// CreateRunner creates a runner the way POST /user/runners would and
// returns it with its "glrt-" token.
func (s *Server) CreateRunner(opts RunnerOptions) Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.newRunnerLocked(opts, "glrt-")
	return r.snapshot()
}

func (s *Server) newRunnerLocked(o RunnerOptions, prefix string) *runnerState {
	if o.Type == "" {
		o.Type = gitlab.RunnerTypeInstance
	}
	if o.AccessLevel == "" {
		o.AccessLevel = gitlab.AccessNotProtected
	}
	r := &runnerState{
		Runner: Runner{
			ID: s.newIDLocked(), Token: prefix + randomAlnum(20), Type: o.Type,
			ProjectID: o.ProjectID, GroupID: o.GroupID, Description: o.Description,
			MaintenanceNote: o.MaintenanceNote, Tags: slices.Clone(o.Tags),
			RunUntagged: !o.NoUntagged, Locked: o.Locked, Paused: o.Paused,
			AccessLevel: o.AccessLevel, MaximumTimeout: o.MaximumTimeout,
		},
		managers: map[string]*Manager{},
		version:  randomHex(16),
	}
	r.TokenExpiresAt = s.expiryLocked()
	s.runners[r.ID] = r
	return r
}

func (s *Server) expiryLocked() *time.Time {
	if s.cfg.TokenExpiry <= 0 {
		return nil
	}
	e := time.Now().Add(s.cfg.TokenExpiry).UTC().Truncate(time.Millisecond)
	return &e
}

// Runner returns a snapshot of runner id.
func (s *Server) Runner(id int64) (Runner, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runners[id]
	if !ok {
		return Runner{}, false
	}
	return r.snapshot(), true
}

// Runners returns snapshots of every runner, deleted ones included, by id.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Runner
	for _, r := range s.runners {
		out = append(out, r.snapshot())
	}
	slices.SortFunc(out, func(a, b Runner) int { return int(a.ID - b.ID) })
	return out
}

// SetRunnerPaused pauses or resumes a runner (a paused runner gets 204).
func (s *Server) SetRunnerPaused(id int64, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.runners[id]; ok {
		r.Paused = paused
		r.version = randomHex(16)
		s.notifyLocked()
	}
}

// ExpireRunnerToken makes runner id's current token expired: every runner
// endpoint answers 403 to it from now on.
func (s *Server) ExpireRunnerToken(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.runners[id]; ok {
		e := time.Now().Add(-time.Second).UTC().Truncate(time.Millisecond)
		r.TokenExpiresAt = &e
	}
}

// runnerByTokenLocked finds a live runner with an unexpired token.
func (s *Server) runnerByTokenLocked(token string) *runnerState {
	if token == "" {
		return nil
	}
	for _, r := range s.runners {
		if r.Token != token || r.Deleted {
			continue
		}
		if r.TokenExpiresAt != nil && !time.Now().Before(*r.TokenExpiresAt) {
			return nil
		}
		r.ContactedAt = time.Now()
		return r
	}
	return nil
}

// runnerParams is the union of the runner lifecycle request bodies.
type runnerParams struct {
	Token           string          `json:"token"`
	SystemID        string          `json:"system_id"`
	RunnerType      string          `json:"runner_type"`
	GroupID         int64           `json:"group_id"`
	ProjectID       int64           `json:"project_id"`
	Description     string          `json:"description"`
	MaintenanceNote string          `json:"maintenance_note"`
	MaintainerNote  string          `json:"maintainer_note"`
	Paused          *bool           `json:"paused"`
	Active          *bool           `json:"active"`
	Locked          *bool           `json:"locked"`
	AccessLevel     string          `json:"access_level"`
	RunUntagged     *bool           `json:"run_untagged"`
	TagList         json.RawMessage `json:"tag_list"`
	MaximumTimeout  int             `json:"maximum_timeout"`
	Info            *gitlab.Info    `json:"info"`
}

// decodeRunnerParams reads the body of a runner lifecycle request, which
// names its runner (or registration) token: a body without token is a 400.
func (s *Server) decodeRunnerParams(w http.ResponseWriter, r *http.Request, endpoint string) (runnerParams, bool) {
	var p runnerParams
	if !s.decodeJSON(w, r, endpoint, &p) {
		return p, false
	}
	if p.Token == "" {
		writeError(w, http.StatusBadRequest, "token is missing")
		return p, false
	}
	return p, true
}

// runnerOr403Locked finds the live runner of token, or answers 403 and
// returns nil.
func (s *Server) runnerOr403Locked(w http.ResponseWriter, token string) *runnerState {
	rs := s.runnerByTokenLocked(token)
	if rs == nil {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
	}
	return rs
}

// decodeJSON reads a JSON body; a wrong Content-Type is a violation, a body
// that does not parse is a 400.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, endpoint string, v any) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		s.violate("%s: Content-Type %q, want application/json", endpoint, r.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		s.violate("%s: body is not JSON: %v", endpoint, err)
		writeError(w, http.StatusBadRequest, "body is not valid JSON")
		return false
	}
	return true
}

// settings validates the runner settings of a create or register request;
// it returns GitLab's validation message on failure.
func (p *runnerParams) settings() (RunnerOptions, map[string][]string) {
	o := RunnerOptions{
		Type: p.RunnerType, ProjectID: p.ProjectID, GroupID: p.GroupID,
		Description: p.Description, MaintenanceNote: p.MaintenanceNote,
		AccessLevel: p.AccessLevel, MaximumTimeout: p.MaximumTimeout,
	}
	if o.MaintenanceNote == "" {
		o.MaintenanceNote = p.MaintainerNote
	}
	if p.Locked != nil {
		o.Locked = *p.Locked
	}
	if p.Paused != nil {
		o.Paused = *p.Paused
	} else if p.Active != nil {
		o.Paused = !*p.Active
	}
	errs := map[string][]string{}
	if len(p.TagList) > 0 && string(p.TagList) != "null" {
		var list []string
		var csv string
		switch {
		case json.Unmarshal(p.TagList, &list) == nil:
		case json.Unmarshal(p.TagList, &csv) == nil:
			list = strings.Split(csv, ",")
		default:
			errs["tag_list"] = []string{"is invalid"}
		}
		for _, t := range list {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(o.Tags, t) {
				o.Tags = append(o.Tags, t)
			}
		}
	}
	if p.RunUntagged != nil {
		o.NoUntagged = !*p.RunUntagged
	}
	if len(o.Tags) > 50 {
		errs["tags_list"] = []string{"Too many tags specified. Please limit the number of tags to 50"}
	}
	if o.NoUntagged && len(o.Tags) == 0 {
		errs["tags_list"] = append(errs["tags_list"], "can not be empty when runner is not allowed to pick untagged jobs")
	}
	if p.MaximumTimeout != 0 && p.MaximumTimeout < 600 {
		errs["maximum_timeout"] = []string{"needs to be at least 10 minutes"}
	}
	if len(o.MaintenanceNote) > 1024 {
		errs["maintenance_note"] = []string{"is too long (maximum is 1024 characters)"}
	}
	switch o.AccessLevel {
	case "", gitlab.AccessNotProtected, gitlab.AccessRefProtected:
	default:
		errs["access_level"] = []string{"does not have a valid value"}
	}
	if len(errs) > 0 {
		return o, errs
	}
	return o, nil
}

func credentialsBody(id int64, token string, expires *time.Time) map[string]any {
	body := map[string]any{"token": token, "token_expires_at": nil}
	if id != 0 {
		body["id"] = id
	}
	if expires != nil {
		body["token_expires_at"] = expires.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return body
}

func (s *Server) userFromRequest(r *http.Request) *user {
	token := r.Header.Get("Private-Token")
	if token == "" {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			token = strings.TrimPrefix(a, "Bearer ")
		}
	}
	if token == "" {
		token = r.URL.Query().Get("private_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[token]
}

func (s *Server) handleCreateUserRunner(w http.ResponseWriter, r *http.Request) {
	u := s.userFromRequest(r)
	if u == nil {
		writeMessage(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	var p runnerParams
	if !s.decodeJSON(w, r, EndpointCreateUserRunner, &p) {
		return
	}
	switch p.RunnerType {
	case "":
		writeError(w, http.StatusBadRequest, "runner_type is missing")
		return
	case gitlab.RunnerTypeInstance, gitlab.RunnerTypeGroup, gitlab.RunnerTypeProject:
	default:
		writeError(w, http.StatusBadRequest, "runner_type does not have a valid value")
		return
	}
	if p.RunnerType == gitlab.RunnerTypeGroup && p.GroupID == 0 {
		writeError(w, http.StatusBadRequest, "group_id is missing")
		return
	}
	if p.RunnerType == gitlab.RunnerTypeProject && p.ProjectID == 0 {
		writeError(w, http.StatusBadRequest, "project_id is missing")
		return
	}
	o, errs := p.settings()
	if errs != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": errs})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mayCreateLocked(u, o) {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	rs := s.newRunnerLocked(o, "glrt-")
	rs.CreatedBy = u.Username
	writeJSON(w, http.StatusCreated, credentialsBody(rs.ID, rs.Token, rs.TokenExpiresAt))
}

func (s *Server) mayCreateLocked(u *user, o RunnerOptions) bool {
	if u.Admin {
		return true
	}
	switch o.Type {
	case gitlab.RunnerTypeProject:
		return slices.Contains(u.Projects, o.ProjectID)
	case gitlab.RunnerTypeGroup:
		for _, id := range u.Projects {
			if p, ok := s.projects[id]; ok && p.NamespaceID == o.GroupID {
				return true
			}
		}
	}
	return false
}

func (s *Server) handleRegisterRunner(w http.ResponseWriter, r *http.Request) {
	p, ok := s.decodeRunnerParams(w, r, EndpointRegisterRunner)
	if !ok {
		return
	}
	if p.Token != s.registrationToken {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if s.cfg.RegistrationTokensDisabled {
		writeMessage(w, http.StatusGone, "410 Gone - runner registration disallowed")
		return
	}
	if p.RunnerType != "" || p.ProjectID != 0 || p.GroupID != 0 {
		s.violate("%s: runner_type/project_id/group_id belong to POST /user/runners", EndpointRegisterRunner)
	}
	p.RunnerType, p.ProjectID, p.GroupID = "", 0, 0
	o, errs := p.settings()
	if errs != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": errs})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.newRunnerLocked(o, "glrtr-")
	rs.Legacy = true
	if p.Info != nil {
		rs.Info = *p.Info
	}
	writeJSON(w, http.StatusCreated, credentialsBody(rs.ID, rs.Token, rs.TokenExpiresAt))
}

func (s *Server) handleVerifyRunner(w http.ResponseWriter, r *http.Request) {
	p, ok := s.decodeRunnerParams(w, r, EndpointVerifyRunner)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.runnerOr403Locked(w, p.Token)
	if rs == nil {
		return
	}
	if p.SystemID != "" {
		s.touchManagerLocked(rs, p.SystemID, p.Info)
	}
	writeJSON(w, http.StatusOK, credentialsBody(rs.ID, rs.Token, rs.TokenExpiresAt))
}

func (s *Server) touchManagerLocked(rs *runnerState, systemID string, info *gitlab.Info) *Manager {
	m, ok := rs.managers[systemID]
	if !ok {
		m = &Manager{SystemID: systemID}
		rs.managers[systemID] = m
	}
	m.ContactedAt = time.Now()
	if info != nil {
		m.Info = *info
	}
	return m
}

func (s *Server) handleDeleteRunner(w http.ResponseWriter, r *http.Request) {
	p, ok := s.decodeRunnerParams(w, r, EndpointDeleteRunner)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.runnerOr403Locked(w, p.Token)
	if rs == nil {
		return
	}
	rs.Deleted = true
	s.notifyLocked()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleDeleteManager(w http.ResponseWriter, r *http.Request) {
	p, ok := s.decodeRunnerParams(w, r, EndpointDeleteManager)
	if !ok {
		return
	}
	if p.SystemID == "" {
		writeError(w, http.StatusBadRequest, "system_id is missing")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.runnerOr403Locked(w, p.Token)
	if rs == nil {
		return
	}
	if _, ok := rs.managers[p.SystemID]; !ok {
		writeMessage(w, http.StatusNotFound, "404 Runner Manager Not Found")
		return
	}
	delete(rs.managers, p.SystemID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleResetToken(w http.ResponseWriter, r *http.Request) {
	p, ok := s.decodeRunnerParams(w, r, EndpointResetToken)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.runnerOr403Locked(w, p.Token)
	if rs == nil {
		return
	}
	prefix := "glrt-"
	if rs.Legacy {
		prefix = "glrtr-"
	}
	rs.Token = prefix + randomAlnum(20)
	rs.TokenExpiresAt = s.expiryLocked()
	body := map[string]any{"token": rs.Token}
	if rs.TokenExpiresAt != nil {
		body["token_expires_at"] = rs.TokenExpiresAt.Format("2006-01-02T15:04:05.000Z")
	}
	writeJSON(w, http.StatusCreated, body)
}
