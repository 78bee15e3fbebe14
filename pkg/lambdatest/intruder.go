package lambdatest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// Intruder builds the hostile job of ./pkg/lambdatest/testdata/intruder
// and returns its path, for a job to run inside an environment. It finds
// the Runtime API through /proc/net/tcp (not AWS_LAMBDA_RUNTIME_API),
// reads the running invocation's event again, posts a forged response
// for it, then waits on /next for what the environment receives next,
// and reports each step as a JSON line (IntruderStep) to a file or URL:
//
//	intruder -report <file|http://…> [-forge '<json>'] [-next N]
//	         [-next-timeout 60s] [-probe-timeout 2s]
//
// -forge defaults to {"state":"success","reported":true}; -next to 1.
func Intruder(t testing.TB) string {
	t.Helper()
	return Build(t, "./pkg/lambdatest/testdata/intruder")
}

// IntruderStep is one line of the intruder's report.
type IntruderStep struct {
	// Step is "start", "reread" (the API found, and the running
	// invocation's event read again), "forge" (the forged response
	// posted), "next" (one answer of /next), "discover" (no API found) or
	// "done".
	Step string    `json:"step"`
	Time time.Time `json:"time"`
	PID  int       `json:"pid"`
	// EnvHasAPI (start): AWS_LAMBDA_RUNTIME_API was in the job's
	// environment.
	EnvHasAPI bool `json:"env_has_api,omitempty"`
	// Listeners (start): the listening loopback sockets the job saw, in
	// the order it tried them.
	Listeners []string `json:"listeners,omitempty"`
	// API is where the Runtime API was found.
	API string `json:"api,omitempty"`
	// N numbers the "next" steps from 1.
	N int `json:"n,omitempty"`
	// Status is the HTTP status of the step's request.
	Status int `json:"status,omitempty"`
	// RequestID and TenantID are the invocation's, from the Runtime API's
	// headers (reread, next) or the one forged for (forge).
	RequestID string `json:"request_id,omitempty"`
	TenantID  string `json:"tenant_id,omitempty"`
	// Event is the invocation's event (reread, next).
	Event json.RawMessage `json:"event,omitempty"`
	// Body is an answer that is not JSON (the forge's answer, an error).
	Body string `json:"body,omitempty"`
	// Error says why the step's request failed.
	Error string `json:"error,omitempty"`
}

// ReadIntruderSteps reads an intruder's report file; a missing file is no
// step yet.
func ReadIntruderSteps(path string) ([]IntruderStep, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lambdatest: read intruder report: %w", err)
	}
	defer f.Close()
	var out []IntruderStep
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		var s IntruderStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return out, fmt.Errorf("lambdatest: read intruder report line %d: %w", len(out)+1, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}
