package poller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/finisher"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

// countingTransport counts DynamoDB operations by their X-Amz-Target.
type countingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	ops  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndex(op, ".")+1:]
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

// take returns the counts so far and starts again.
func (c *countingTransport) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := c.ops
	c.ops = map[string]int{}
	return ops
}

var readOps = map[string]bool{"GetItem": true, "Query": true, "Scan": true, "BatchGetItem": true, "TransactGetItems": true}

func split(ops map[string]int) (reads, writes int) {
	for op, n := range ops {
		if readOps[op] {
			reads += n
		} else {
			writes += n
		}
	}
	return reads, writes
}

// BenchmarkDynamoDBOpsPerJob runs one job through the poller (take,
// claim, invoke) and the finisher (record, free the slot) against DynamoDB
// Local, and reports the DynamoDB operations each side makes per job.
//
// Expected: the poller 3 reads and 4 writes; the finisher 1 read (the
// job record, whose dispatch token hash proves the record) and 2 writes
// (record the outcome, free the slot). Proving a record by renewing its
// slot cost the finisher a third write before.
func BenchmarkDynamoDBOpsPerJob(b *testing.B) {
	srv := dynamotest.Start(b)
	counter := &countingTransport{next: http.DefaultTransport, ops: map[string]int{}}
	db := dynamodb.New(dynamotest.Client(srv.Endpoint).Options(), func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: counter}
	})
	e := newEnvWithClient(b, db)
	r, _ := e.addRunner(1, nil)
	fin := finisher.New(e.store, finisher.Config{GitLab: e.glOpts})
	var pollReads, pollWrites, finReads, finWrites int
	for b.Loop() {
		e.enqueue(gitlabtest.JobSpec{})
		counter.take()
		res, err := e.poller.Poll(context.Background(), dispatch.Poll{RunnerID: r.ID})
		if err != nil || res.Jobs != 1 {
			b.Fatalf("Poll() = %+v, %v; want one job", res, err)
		}
		pr, pw := split(counter.take())
		pollReads, pollWrites = pollReads+pr, pollWrites+pw
		calls := e.inv.Accepted()
		payload := calls[len(calls)-1].Payload
		rec := invoke.Record{Version: "1.0", RequestContext: invoke.RequestContext{Condition: invoke.ConditionSuccess},
			RequestPayload: payload, ResponsePayload: json.RawMessage(`{"state":"success","reported":true,"duration_ms":1000}`)}
		if _, err := fin.Finish(context.Background(), rec); err != nil {
			b.Fatalf("Finish: %v", err)
		}
		fr, fw := split(counter.take())
		finReads, finWrites = finReads+fr, finWrites+fw
	}
	n := float64(b.N)
	b.ReportMetric(float64(pollReads)/n, "poller-reads/job")
	b.ReportMetric(float64(pollWrites)/n, "poller-writes/job")
	b.ReportMetric(float64(finReads)/n, "finisher-reads/job")
	b.ReportMetric(float64(finWrites)/n, "finisher-writes/job")
}
