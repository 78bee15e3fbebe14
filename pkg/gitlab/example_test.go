package gitlab_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"gitlab-serverless-runner/pkg/gitlab"
)

// A poller asks for a job, keeping the last X-GitLab-Last-Update value
// itself, and tells an invalid token (stop polling) from no job.
func ExampleClient_RequestJob() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-GitLab-Last-Update", "q42")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	c, err := gitlab.New(srv.URL, gitlab.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	lastUpdate := "" // stored per runner between polls
	res, err := c.RequestJob(context.Background(), gitlab.JobRequest{
		Token:      "glrt-example",
		SystemID:   "s_0123456789ab",
		LastUpdate: lastUpdate,
		Info:       gitlab.NewInfo("1.0.0", gitlab.Features{Variables: true}),
	})
	switch {
	case errors.Is(err, gitlab.ErrForbidden):
		fmt.Println("token invalid or expired: stop polling this runner")
	case err != nil:
		fmt.Println("try again later:", err)
	case res.Job != nil:
		fmt.Println("got job", res.Job.ID)
	default:
		if res.LastUpdate != "" {
			lastUpdate = res.LastUpdate
		}
		fmt.Println("no job; next last_update:", lastUpdate)
	}
	// Output: no job; next last_update: q42
}

func ExampleFailureReason_For() {
	supported := []string{"script_failure", "unknown_failure"}
	fmt.Println(gitlab.FailureReason("").For(supported))
	fmt.Println(gitlab.ReasonImagePullFailure.For(supported))
	fmt.Println(gitlab.ReasonJobCanceled.For(supported))
	// Output:
	// script_failure
	// runner_system_failure
	// unknown_failure
}
