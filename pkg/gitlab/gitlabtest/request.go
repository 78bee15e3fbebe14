package gitlabtest

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// longPollBodyLimit is Workhorse's job request body limit.
const longPollBodyLimit = 32 << 10

// HeldJobRequests is the number of job requests currently held by long
// polling; tests use it to know a request is parked before changing the
// queue.
func (s *Server) HeldJobRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

func (s *Server) handleJobRequest(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot read body")
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if s.cfg.LongPoll > 0 && mt == "application/json" && len(raw) > longPollBodyLimit {
		writeMessage(w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large")
		return
	}
	var req gitlab.JobRequest
	r.Body = io.NopCloser(bytes.NewReader(raw))
	if !s.decodeJSON(w, r, EndpointJobRequest, &req) {
		return
	}
	if req.Token == "" {
		writeError(w, http.StatusBadRequest, "token is missing")
		return
	}

	s.mu.Lock()
	rs := s.runnerByTokenLocked(req.Token)
	if rs == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	info := req.Info
	if req.SystemID != "" {
		s.touchManagerLocked(rs, req.SystemID, &info)
	}

	// Workhorse long polling: hold while nothing changed for this runner.
	if s.cfg.LongPoll > 0 && mt == "application/json" && req.LastUpdate != "" {
		w.Header().Set("Gitlab-Ci-Builds-Polling", "yes")
		if req.LastUpdate == rs.version {
			s.held++
			timer := time.NewTimer(s.cfg.LongPoll)
			defer timer.Stop()
			for req.LastUpdate == rs.version && !rs.Deleted {
				ch := s.changed
				s.mu.Unlock()
				expired := false
				select {
				case <-ch:
				case <-timer.C:
					expired = true
				case <-r.Context().Done():
					expired = true
				}
				s.mu.Lock()
				if expired {
					break
				}
			}
			s.held--
			s.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	defer s.mu.Unlock()

	if rs.Paused || req.LastUpdate == rs.version {
		w.Header().Set("X-GitLab-Last-Update", rs.version)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	features := featureMap(info.Features)
	for pos := 0; pos < len(s.queue); pos++ {
		j := s.jobs[s.queue[pos]]
		if !s.matchesLocked(rs, j) {
			continue
		}
		s.queue = slices.Delete(s.queue, pos, pos+1)
		pos--
		missing := ""
		for _, f := range j.Spec.requiredFeatures() {
			if !features[f] {
				missing = f
				break
			}
		}
		if missing != "" {
			j.State = statusFailed
			j.FailureReason = gitlab.ReasonRunnerUnsupported
			j.RunnerID = rs.ID
			s.log.Info("gitlabtest: job dropped", "job_id", j.ID, "runner_id", rs.ID, "missing_feature", missing)
			s.queueChangedLocked()
			continue
		}
		s.assignLocked(j, rs, req.SystemID, info.Features, pos+1)
		writeJSON(w, http.StatusCreated, j.Payload)
		return
	}
	w.Header().Set("X-GitLab-Last-Update", rs.version)
	w.WriteHeader(http.StatusNoContent)
}

// assignLocked hands job j to runner rs: running at once, or pending until
// acknowledged when the runner does two-phase commit.
func (s *Server) assignLocked(j *jobState, rs *runnerState, systemID string, f gitlab.Features, pos int) {
	j.RunnerID = rs.ID
	j.SystemID = systemID
	j.gracefulCancel = f.CancelGracefully
	j.Payload = s.payloadLocked(j, rs, pos)
	if f.TwoPhaseJobCommit {
		j.awaitingAck = true
		s.armAckLocked(j)
	} else {
		j.State = statusRunning
	}
	s.queueChangedLocked()
}

// armAckLocked (re)starts the two-phase acknowledgement window.
func (s *Server) armAckLocked(j *jobState) {
	j.ackDeadline = time.Now().Add(s.cfg.AckWindow)
	token := j.Token
	time.AfterFunc(s.cfg.AckWindow, func() { s.ackExpired(j.ID, token) })
}

// ackExpired re-queues a job whose runner did not acknowledge it in time.
func (s *Server) ackExpired(id int64, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil || !j.awaitingAck || j.Token != token || time.Now().Before(j.ackDeadline) {
		return
	}
	j.awaitingAck = false
	j.RunnerID, j.SystemID, j.Payload = 0, "", nil
	j.Token = newJobToken()
	j.Requeued++
	j.enqueuedAt = time.Now()
	s.queue = append(s.queue, j.ID)
	s.log.Info("gitlabtest: job re-queued, not acknowledged", "job_id", id)
	s.queueChangedLocked()
}
