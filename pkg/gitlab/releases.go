package gitlab

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// maxReleaseBody bounds the answer to a release creation.
const maxReleaseBody = 1 << 20

// ReleaseLink is one asset link of a release (Releases API, assets:links).
type ReleaseLink struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	LinkType string `json:"link_type,omitempty"`
	// DirectAssetPath is the path of the permanent link to the asset
	// (filepath in older GitLab versions, still accepted).
	DirectAssetPath string `json:"direct_asset_path,omitempty"`
	Filepath        string `json:"filepath,omitempty"`
}

// ReleaseAssets are a release's assets.
type ReleaseAssets struct {
	Links []ReleaseLink `json:"links"`
}

// ReleaseRequest is the body of POST /projects/:id/releases, with the
// fields the release step of a job (release-cli create) sends.
type ReleaseRequest struct {
	TagName     string         `json:"tag_name"`
	TagMessage  string         `json:"tag_message,omitempty"`
	Name        string         `json:"name,omitempty"`
	Description string         `json:"description,omitempty"`
	Ref         string         `json:"ref,omitempty"`
	Milestones  []string       `json:"milestones,omitempty"`
	ReleasedAt  *time.Time     `json:"released_at,omitempty"`
	Assets      *ReleaseAssets `json:"assets,omitempty"`
}

// Release is a release as the Releases API returns it, reduced to what a
// job's trace shows.
type Release struct {
	TagName     string    `json:"tag_name"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	ReleasedAt  time.Time `json:"released_at"`
	Assets      struct {
		Links []ReleaseLink `json:"links"`
	} `json:"assets"`
	Milestones []struct {
		Title string `json:"title"`
	} `json:"milestones"`
}

// CreateRelease creates a release of the project with a job token (JOB-TOKEN), as a job's release step does. 201
// is success; 409 (a release of that tag exists) and 422 (no such tag and
// no ref to create it from, an invalid milestone) come back as errors
// carrying GitLab's message; 401 and 403 are ErrForbidden.
func (c *Client) CreateRelease(ctx context.Context, projectID int64, jobToken string, req ReleaseRequest) (Release, error) {
	cl, err := jsonCall(http.MethodPost, "projects/"+strconv.FormatInt(projectID, 10)+"/releases", req, jobToken)
	if err != nil {
		return Release{}, err
	}
	cl.header.Set(headerJobToken, jobToken)
	resp, err := c.do(ctx, cl)
	if err != nil {
		return Release{}, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return Release{}, c.fail(cl, resp)
	}
	defer discard(resp.Response)
	var rel Release
	if err := decodeJSON(resp.Response, maxReleaseBody, &rel); err != nil {
		return Release{}, c.invalid(cl, resp, err)
	}
	return rel, nil
}
