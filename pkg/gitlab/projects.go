package gitlab

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxProjectsBody bounds one page of the projects list.
const maxProjectsBody = 4 << 20

// maxProjectsPerPage is the page size GitLab allows at most.
const maxProjectsPerPage = 100

// AccessMaintainer is GitLab's access level of a project maintainer, the
// least a user needs to create a project runner.
const AccessMaintainer = 40

// Project is a project as GET /projects lists it, reduced to what choosing
// a project for a new runner needs.
type Project struct {
	ID                int64  `json:"id"`
	Name              string `json:"name"`
	PathWithNamespace string `json:"path_with_namespace"`
	WebURL            string `json:"web_url"`
}

// ListMaintainedProjects returns the first page (up to 100) of the projects
// the user maintains or owns (GET /projects?membership=true&
// min_access_level=40), ordered by GitLab's default. userToken is the user's
// OAuth access token (sent as a bearer token) or a personal access token
// ("glpat-", sent as PRIVATE-TOKEN). A 401 or 403 is ErrForbidden.
func (c *Client) ListMaintainedProjects(ctx context.Context, userToken string) ([]Project, error) {
	h := http.Header{}
	h.Set("Accept", "application/json")
	if strings.HasPrefix(userToken, "glpat-") {
		h.Set(headerPrivateToken, userToken)
	} else {
		h.Set("Authorization", "Bearer "+userToken)
	}
	cl := call{
		method: http.MethodGet,
		path:   "projects",
		query: url.Values{
			"membership":       {"true"},
			"min_access_level": {strconv.Itoa(AccessMaintainer)},
			"simple":           {"true"},
			"per_page":         {strconv.Itoa(maxProjectsPerPage)},
		},
		header:  h,
		secrets: []string{userToken},
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.fail(cl, resp)
	}
	defer discard(resp.Response)
	var projects []Project
	if err := decodeJSON(resp.Response, maxProjectsBody, &projects); err != nil {
		return nil, c.invalid(cl, resp, err)
	}
	return projects, nil
}
