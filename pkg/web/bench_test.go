package web_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/web"
)

// BenchmarkListRunners serves GET /runners for a user with 100 runners
// through the whole app (middleware, session, DynamoDB Local, template) and
// reports requests per second and the p50 and p99 latency.
func BenchmarkListRunners(b *testing.B) {
	e := newEnv(b, func(c *web.Config) { c.MaxRunnersPerUser = 0 })
	ada := e.signIn("sub-ada", "ada", "")
	for i := range 100 {
		e.createDirect("sub-ada", fmt.Sprintf("runner %03d", i))
	}
	req := httptest.NewRequest(http.MethodGet, "/runners", nil)
	for _, c := range ada.http.Jar.Cookies(mustURL(b, e.srv.URL)) {
		req.AddCookie(c)
	}
	// Check once, outside the timing, that the page is the full list.
	rec := httptest.NewRecorder()
	e.app.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), `href="/runners/`) < 100 {
		b.Fatalf("GET /runners: status %d, want 200 listing 100 runners", rec.Code)
	}
	latencies := make([]time.Duration, 0, 1024)
	start := time.Now()
	for b.Loop() {
		t0 := time.Now()
		rec := httptest.NewRecorder()
		e.app.ServeHTTP(rec, req)
		latencies = append(latencies, time.Since(t0))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
	elapsed := time.Since(start)
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "rps")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
