package gitlab_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func TestListMaintainedProjects(t *testing.T) {
	srv := gitlabtest.New(t)
	mine := srv.CreateProject("ada/engine", map[string]string{"README.md": "hi\n"})
	other := srv.CreateProject("bob/loom", map[string]string{"README.md": "hi\n"})
	ada := srv.AddUser("ada", mine)
	srv.AddUser("bob", other)

	tests := []struct {
		name    string
		token   string
		want    []string
		wantErr error
	}{
		{"oauth token", ada.OAuthToken, []string{"ada/engine"}, nil},
		{"personal access token", ada.PAT, []string{"ada/engine"}, nil},
		{"unknown token", "not-a-token", nil, gitlab.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := gitlab.New(srv.URL(), gitlab.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.ListMaintainedProjects(context.Background(), tt.token)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ListMaintainedProjects() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), tt.token) {
					t.Errorf("error %q contains the token", err)
				}
				return
			}
			var paths []string
			for _, p := range got {
				paths = append(paths, p.PathWithNamespace)
				if p.ID == 0 {
					t.Errorf("project %s has no id", p.PathWithNamespace)
				}
			}
			if strings.Join(paths, ",") != strings.Join(tt.want, ",") {
				t.Errorf("projects = %v, want %v", paths, tt.want)
			}
			reqs := srv.RequestsTo(gitlabtest.EndpointProjects)
			q := reqs[len(reqs)-1].Query
			if q.Get("membership") != "true" || q.Get("min_access_level") != "40" {
				t.Errorf("query = %v, want membership=true and min_access_level=40", q)
			}
		})
	}
}
