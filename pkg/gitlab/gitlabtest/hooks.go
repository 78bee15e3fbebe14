package gitlabtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// HookDelivery is one job event POSTed to a webhook.
type HookDelivery struct {
	URL     string
	JobID   int64
	Status  string // build_status sent
	Code    int    // HTTP status answered, 0 on a transport error
	Err     string // transport error, if any
	Payload map[string]any
}

type jobHook struct{ url, secret string }

type hookEvent struct {
	hook    jobHook
	jobID   int64
	status  string
	payload map[string]any
}

// AddJobHook registers a project-independent job webhook: every job status
// change (pending on enqueue, running, success, failed, canceled, and
// canceling) is POSTed to url as GitLab's "Job Hook" event with
// X-Gitlab-Token: secret. Deliveries are sent in order, one at a time, by
// a background goroutine; HookDeliveries reports them.
func (s *Server) AddJobHook(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hooks) == 0 {
		for _, j := range s.jobs {
			j.announced = j.State // events from now on
		}
	}
	s.hooks = append(s.hooks, jobHook{url: url, secret: secret})
	if s.hookCh == nil {
		s.hookCh = make(chan hookEvent, 1024)
		s.hookDone = make(chan struct{})
		go s.deliverHooks()
	}
}

// HookDeliveries returns the webhook deliveries made so far.
func (s *Server) HookDeliveries() []HookDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HookDelivery(nil), s.deliveries...)
}

// jobEventLocked queues a job event for every hook when the job's state
// differs from the last one announced.
func (s *Server) jobEventLocked(j *jobState) {
	if j.announced == j.State {
		return
	}
	j.announced = j.State
	p := s.projects[j.ProjectID]
	var runner any
	if r, ok := s.runners[j.RunnerID]; ok && j.State != statusPending {
		runner = map[string]any{"id": r.ID, "description": r.Description, "active": !r.Paused,
			"runner_type": r.Type, "is_shared": r.Type == "instance_type", "tags": r.Tags}
	}
	payload := map[string]any{
		"object_kind": "build", "ref": j.Ref, "tag": j.RefType == "tag",
		"before_sha": zeroSHA, "sha": j.SHA, "build_id": j.ID, "build_name": j.Name,
		"build_stage": j.Stage, "build_status": j.State,
		"build_created_at":     j.enqueuedAt.UTC().Format("2006-01-02 15:04:05 UTC"),
		"build_failure_reason": j.FailureReason, "build_allow_failure": false,
		"pipeline_id": j.PipelineID, "project_id": j.ProjectID, "project_name": p.Namespace + " / " + p.Name,
		"runner":     runner,
		"repository": map[string]any{"name": p.Name, "git_http_url": p.CloneURL(), "homepage": s.URL() + "/" + p.Path},
	}
	for _, h := range s.hooks {
		select {
		case s.hookCh <- hookEvent{hook: h, jobID: j.ID, status: j.State, payload: payload}:
		default:
			s.violateLocked("webhook queue full: job %d event %s dropped", j.ID, j.State)
		}
	}
}

func (s *Server) deliverHooks() {
	defer close(s.hookDone)
	client := &http.Client{Timeout: 10 * time.Second}
	for ev := range s.hookCh {
		body, _ := json.Marshal(ev.payload)
		d := HookDelivery{URL: ev.hook.url, JobID: ev.jobID, Status: ev.status, Payload: ev.payload}
		req, err := http.NewRequest(http.MethodPost, ev.hook.url, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Gitlab-Event", "Job Hook")
			req.Header.Set("X-Gitlab-Token", ev.hook.secret)
			req.Header.Set("User-Agent", "GitLab/18.5.0")
			var res *http.Response
			if res, err = client.Do(req); err == nil {
				d.Code = res.StatusCode
				res.Body.Close()
			}
		}
		if err != nil {
			d.Err = err.Error()
		}
		s.mu.Lock()
		s.deliveries = append(s.deliveries, d)
		s.notifyLocked()
		s.mu.Unlock()
	}
}
