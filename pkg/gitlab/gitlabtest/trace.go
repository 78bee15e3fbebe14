package gitlabtest

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// jobToken is the JOB-TOKEN header, or the token query parameter.
func jobToken(r *http.Request) string {
	if t := r.Header.Get("Job-Token"); t != "" {
		return t
	}
	return r.URL.Query().Get("token")
}

// parseContentRange parses "<start>-<end>" (no unit, no total).
func parseContentRange(v string) (start, end int64, ok bool) {
	a, b, found := strings.Cut(v, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	return start, end, err1 == nil && err2 == nil && start >= 0
}

func (s *Server) handlePatchTrace(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot read body")
		return
	}
	token := jobToken(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if token == "" {
		s.violateLocked("PATCH %s: no JOB-TOKEN", r.URL.Path)
	}
	j := s.jobFromPathLocked(r)
	if j == nil {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if token != j.Token {
		w.Header().Set("Job-Status", j.State)
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if j.State != statusRunning && j.State != statusCanceling || j.awaitingAck {
		// A runner learns of an abrupt cancel or a server-side failure only
		// from this 403, so only a PATCH after its own final update is wrong.
		if j.runnerFinished {
			s.violateLocked("PATCH %s: trace sent after the job is %s", r.URL.Path, j.State)
		}
		w.Header().Set("Job-Status", j.State)
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Job is not running")
		return
	}
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		s.violateLocked("PATCH %s: no Content-Range", r.URL.Path)
		writeError(w, http.StatusBadRequest, "Content-Range is missing")
		return
	}
	start, end, ok := parseContentRange(cr)
	if !ok {
		s.violateLocked("PATCH %s: malformed Content-Range %q", r.URL.Path, cr)
		writeError(w, http.StatusBadRequest, "Content-Range is invalid")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "text/plain" {
		s.violateLocked("PATCH %s: Content-Type %q, want text/plain", r.URL.Path, r.Header.Get("Content-Type"))
	}
	if len(body) == 0 {
		s.violateLocked("PATCH %s: empty body", r.URL.Path)
	} else if end != start+int64(len(body))-1 {
		s.violateLocked("PATCH %s: Content-Range %q does not match a %d-byte body", r.URL.Path, cr, len(body))
	}
	if q := r.URL.Query().Get("debug_trace"); q == "true" {
		j.DebugTrace = true
	}
	size := int64(len(j.Trace))
	if start != size {
		if !j.traceLost {
			s.violateLocked("PATCH %s: Content-Range starts at %d, stored trace has %d bytes", r.URL.Path, start, size)
		}
		w.Header().Set("Range", fmt.Sprintf("0-%d", size))
		w.Header().Set("Job-Status", j.State)
		writeMessage(w, http.StatusRequestedRangeNotSatisfiable, "416 Range Not Satisfiable")
		return
	}
	if s.cfg.TraceSizeLimit > 0 && size+int64(len(body)) > s.cfg.TraceSizeLimit {
		j.State = statusFailed
		j.FailureReason = "trace_size_exceeded"
		s.notifyLocked()
		w.Header().Set("Job-Status", j.State)
		writeMessage(w, http.StatusForbidden, "403 Forbidden - The trace is too big")
		return
	}
	j.traceLost = false
	j.Trace = append(j.Trace, body...)
	interval := s.cfg.TraceUpdateInterval
	if j.watched {
		interval = s.cfg.WatchedTraceUpdateInterval
	}
	w.Header().Set("Range", fmt.Sprintf("0-%d", len(j.Trace)))
	w.Header().Set("Job-Status", j.State)
	w.Header().Set("X-GitLab-Trace-Update-Interval", strconv.Itoa(interval))
	w.WriteHeader(http.StatusAccepted)
}
