package gitlabtest

import (
	"fmt"
	"hash/crc32"
	"net/http"
	"slices"
	"strconv"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// jobFromPath finds the job of a /jobs/{id}/... request.
func (s *Server) jobFromPathLocked(r *http.Request) *jobState {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	return s.jobs[id]
}

// finalUpdateInterval is GitLab's back-off for 202 answers: 1 s for the
// first 3 s since the first final update, then doubling, capped at 64 s.
func (s *Server) finalUpdateInterval(since time.Duration) int {
	if s.cfg.FinalUpdateInterval > 0 {
		return s.cfg.FinalUpdateInterval
	}
	interval := 1
	for limit := 4 * time.Second; since >= limit && interval < 64; limit *= 2 {
		interval *= 2
	}
	return interval
}

func (s *Server) handleUpdateJob(w http.ResponseWriter, r *http.Request) {
	var req gitlab.UpdateJobRequest
	if !s.decodeJSON(w, r, EndpointUpdateJob, &req) {
		return
	}
	token := req.Token
	header := r.Header.Get("Job-Token")
	if token == "" {
		token = header
	} else if header != "" && header != token {
		s.violate("PUT %s: JOB-TOKEN header and body token differ", r.URL.Path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobFromPathLocked(r)
	if token == "" {
		s.violateLocked("PUT %s: no job token (body token or JOB-TOKEN)", r.URL.Path)
	}
	if j == nil {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	status, jobStatus := s.updateLocked(w, r, j, token, req)
	req.Token = ""
	j.Updates = append(j.Updates, Update{Time: time.Now(), Request: req, Status: status, JobStatus: jobStatus})
}

// updateLocked applies one PUT and answers it; it returns the status and
// Job-Status answered.
func (s *Server) updateLocked(w http.ResponseWriter, r *http.Request, j *jobState, token string, req gitlab.UpdateJobRequest) (int, string) {
	answer := func(status int, jobStatus string) (int, string) {
		if jobStatus != "" {
			w.Header().Set("Job-Status", jobStatus)
		}
		if status == http.StatusOK || status == http.StatusAccepted {
			w.WriteHeader(status)
		} else {
			writeMessage(w, status, fmt.Sprintf("%d %s", status, http.StatusText(status)))
		}
		return status, jobStatus
	}
	if token != j.Token {
		return answer(http.StatusForbidden, j.State)
	}
	if j.awaitingAck {
		switch req.State {
		case gitlab.StatePending:
			s.armAckLocked(j)
			return answer(http.StatusOK, statusPending)
		case gitlab.StateRunning:
			j.awaitingAck = false
			j.State = statusRunning
			s.notifyLocked()
			return answer(http.StatusOK, statusRunning)
		default:
			s.violateLocked("PUT %s: state %q before the two-phase job was accepted with state=running", r.URL.Path, req.State)
			return answer(http.StatusBadRequest, "")
		}
	}
	if j.State == statusPending || j.final() {
		return answer(http.StatusForbidden, j.State)
	}
	switch req.State {
	case "", gitlab.StateRunning:
		return answer(http.StatusOK, j.State)
	case gitlab.StateSuccess, gitlab.StateFailed:
	case gitlab.StatePending:
		s.violateLocked("PUT %s: state pending for a job that is not awaiting two-phase acknowledgement", r.URL.Path)
		return answer(http.StatusBadRequest, "")
	default:
		s.violateLocked("PUT %s: invalid state %q", r.URL.Path, req.State)
		return answer(http.StatusBadRequest, "")
	}

	checksum := req.Output.Checksum
	if checksum == "" {
		checksum = req.Checksum
	} else if req.Checksum != "" && req.Checksum != checksum {
		s.violateLocked("PUT %s: checksum %q and output.checksum %q differ", r.URL.Path, req.Checksum, checksum)
	}
	if checksum == "" {
		s.violateLocked("PUT %s: final state %s without output.checksum", r.URL.Path, req.State)
	}
	if checksum != "" && j.finalPending < s.cfg.PendingTraceChunks {
		if j.finalPending == 0 {
			j.finalFirst = time.Now()
		}
		j.finalPending++
		w.Header().Set("X-GitLab-Trace-Update-Interval", strconv.Itoa(s.finalUpdateInterval(time.Since(j.finalFirst))))
		return answer(http.StatusAccepted, j.State)
	}
	if checksum != "" {
		if want := fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(j.Trace)); checksum != want {
			s.violateLocked("PUT %s: output.checksum %s, stored trace has %s", r.URL.Path, checksum, want)
		}
		if req.Output.Bytesize != int64(len(j.Trace)) {
			s.violateLocked("PUT %s: output.bytesize %d, stored trace has %d bytes", r.URL.Path, req.Output.Bytesize, len(j.Trace))
		}
	}
	j.ExitCode = req.ExitCode
	switch {
	case req.State == gitlab.StateSuccess:
		if req.FailureReason != "" || req.ExitCode != 0 {
			s.violateLocked("PUT %s: state success with failure_reason %q / exit_code %d", r.URL.Path, req.FailureReason, req.ExitCode)
		}
		j.FailureReason = ""
	case req.FailureReason == "" || !slices.Contains(FailureReasons, string(req.FailureReason)):
		j.FailureReason = "unknown_failure"
		if req.FailureReason != "" {
			s.violateLocked("PUT %s: failure_reason %q is not in features.failure_reasons", r.URL.Path, req.FailureReason)
		}
	default:
		j.FailureReason = req.FailureReason
	}
	if j.State == statusCanceling {
		j.State = statusCanceled
	} else {
		j.State = req.State
	}
	j.runnerFinished = true
	s.notifyLocked()
	return answer(http.StatusOK, j.State)
}
