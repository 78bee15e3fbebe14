package web_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// clients=1 is one request after another; clients=8 keeps eight in
	// flight, as a busy deployment would (one Lambda environment serves one
	// at a time, so this is the throughput of the app and DynamoDB, not of
	// a single environment).
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var (
				mu        sync.Mutex
				latencies = make([]time.Duration, 0, 1024)
				next      atomic.Int64
				wg        sync.WaitGroup
				failed    atomic.Int64
			)
			b.ResetTimer()
			start := time.Now()
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						rec := httptest.NewRecorder()
						e.app.ServeHTTP(rec, req.Clone(req.Context()))
						d := time.Since(t0)
						if rec.Code != http.StatusOK {
							failed.Add(1)
						}
						mu.Lock()
						latencies = append(latencies, d)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d requests did not answer 200", n)
			}
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "rps")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
