package gitlabtest

import (
	"net/http"
	"slices"
)

// handleCurrentUser answers GET /api/v4/user for a PAT or OAuth token.
func (s *Server) handleCurrentUser(w http.ResponseWriter, r *http.Request) {
	u := s.userFromRequest(r)
	if u == nil {
		writeMessage(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": u.ID, "username": u.Username, "name": u.Username, "state": "active",
		"is_admin": u.Admin, "web_url": s.URL() + "/" + u.Username,
	})
}

// handleProjects answers GET /api/v4/projects with the projects the user
// maintains (membership=true; an admin sees every project).
func (s *Server) handleProjects(w http.ResponseWriter, r *http.Request) {
	u := s.userFromRequest(r)
	if u == nil {
		writeMessage(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	s.mu.Lock()
	var list []*Project
	for _, p := range s.projects {
		if u.Admin || slices.Contains(u.Projects, p.ID) {
			list = append(list, p)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b *Project) int { return int(a.ID - b.ID) })
	out := make([]map[string]any, 0, len(list))
	for _, p := range list {
		out = append(out, map[string]any{
			"id": p.ID, "name": p.Name, "path": p.Name, "path_with_namespace": p.Path,
			"name_with_namespace": p.Path, "default_branch": p.DefaultBranch,
			"web_url": s.URL() + "/" + p.Path, "http_url_to_repo": p.CloneURL(),
			"namespace":   map[string]any{"id": p.NamespaceID, "full_path": p.Namespace},
			"permissions": map[string]any{"project_access": map[string]int{"access_level": 40}},
		})
	}
	writeJSON(w, http.StatusOK, out)
}
