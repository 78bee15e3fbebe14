package main_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// The burst: drainJobs jobs of drainJobTime each, pending at once for a
// runner of concurrency drainConcurrency (the default MAX_CONCURRENCY).
const (
	drainJobs        = 12
	drainConcurrency = 4
	drainJobTime     = 2 * time.Second
)

// BenchmarkBurstDrain measures how fast a burst of pending jobs drains
// through the whole local system (scheduler, web app with its webhook
// route, poller, executors and finisher in process, DynamoDB Local, the
// fake GitLab over HTTP): 12 jobs of 2 s each, pending at once, for a
// runner of concurrency 4, the scheduler's ticker an hour away. Each job's
// script prints the clock when it starts (its pickup) and when it ends.
//
//   - trigger=webhook: GitLab's job webhook announces every job; the clock
//     starts when the 12 jobs are enqueued.
//   - trigger=schedule: no webhook; the jobs wait when the system starts,
//     and its one scheduled run at start takes the first wave; the clock
//     starts at the first pickup (the scheduled poll), whenever the
//     schedule brings it (within a minute as deployed).
//
// Reported: last-pickup-s, the time to the last job's pickup; ideal-s,
// the same for a runner that starts each wave the moment the previous one
// ends ((waves-1) × 2 s); over-ideal-ms, the difference; slot-wait-max-ms,
// the longest a job waited after the end of the job whose slot it took (a
// job's end printed by its script: the executor's final update, the
// finisher and the new poll all count). ns/op is last-pickup-s. The jobs
// run once per -bench invocation, whatever b.N.
func BenchmarkBurstDrain(b *testing.B) {
	ctx := b.Context()
	db, err := dynamolocal.Start(ctx, dynamolocal.Options{})
	if err != nil {
		b.Fatalf("start DynamoDB Local: %v", err)
	}
	b.Cleanup(db.Stop)
	for i, withWebhook := range []bool{true, false} {
		name := "trigger=schedule"
		if withWebhook {
			name = "trigger=webhook"
		}
		var (
			once sync.Once
			d    drain
		)
		b.Run(fmt.Sprintf("%s,jobs=%d,concurrency=%d,job=%s", name, drainJobs, drainConcurrency, drainJobTime), func(b *testing.B) {
			once.Do(func() { d = measureDrain(b, db.Endpoint(), fmt.Sprintf("drain%d-", i), withWebhook) })
			if d.pickups == nil {
				b.Fatal("no measurement")
			}
			waves := (drainJobs + drainConcurrency - 1) / drainConcurrency
			ideal := time.Duration(waves-1) * drainJobTime
			last := d.pickups[len(d.pickups)-1].Sub(d.start)
			var wait time.Duration
			for i := drainConcurrency; i < len(d.pickups); i++ {
				wait = max(wait, d.pickups[i].Sub(d.ends[i-drainConcurrency]))
			}
			b.ReportMetric(float64(last.Nanoseconds()), "ns/op")
			b.ReportMetric(last.Seconds(), "last-pickup-s")
			b.ReportMetric(ideal.Seconds(), "ideal-s")
			b.ReportMetric(ms(last-ideal), "over-ideal-ms")
			b.ReportMetric(ms(wait), "slot-wait-max-ms")
		})
	}
}

// drain is one burst's clock: when it started, and every job's pickup
// and end, each sorted.
type drain struct {
	start         time.Time
	pickups, ends []time.Time
}

var drainLineRE = regexp.MustCompile(`(pickup|end)=(\d{19})`)

// measureDrain runs one burst on the DynamoDB at endpoint (tables named
// with prefix).
func measureDrain(b *testing.B, endpoint, prefix string, withWebhook bool) drain {
	b.Helper()
	bs := newBenchSystem(b, endpoint, prefix, time.Hour, drainConcurrency)
	gl, proj, st, r := bs.gl, bs.proj, bs.st, bs.runner
	ctx := b.Context()
	spec := gitlabtest.JobSpec{
		Script:    []string{`echo "pickup=$(date +%s%N)"`, fmt.Sprintf("sleep %g", drainJobTime.Seconds()), `echo "end=$(date +%s%N)"`},
		Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "none", Public: true}},
		Timeout:   60,
	}
	enqueue := func() []gitlabtest.Job {
		var jobs []gitlabtest.Job
		for range drainJobs {
			jobs = append(jobs, gl.EnqueueJob(proj, spec))
		}
		return jobs
	}

	var jobs []gitlabtest.Job
	var enqueued time.Time
	if !withWebhook {
		// Pending before the system starts: its run at start is the one
		// scheduled poll.
		if err := st.CreateRunner(ctx, r); err != nil {
			b.Fatalf("CreateRunner: %v", err)
		}
		jobs = enqueue()
	}
	sys := bs.start(b)
	if withWebhook {
		bs.addWebhook(sys)
		if err := st.CreateRunner(ctx, r); err != nil {
			b.Fatalf("CreateRunner: %v", err)
		}
		enqueued = time.Now()
		jobs = enqueue()
	}

	var d drain
	waitCtx, stop := context.WithTimeout(ctx, 5*time.Minute)
	defer stop()
	for _, j := range jobs {
		got, err := gl.WaitJob(waitCtx, j.ID)
		if err != nil {
			b.Fatalf("WaitJob(%d): %v", j.ID, err)
		}
		m := drainLineRE.FindAllSubmatch(got.Trace, -1)
		if got.State != "success" || len(m) != 2 {
			b.Fatalf("job %d ended %s, want success with a pickup= and an end= line; trace:\n%s", j.ID, got.State, got.Trace)
		}
		for _, l := range m {
			ns, _ := strconv.ParseInt(string(l[2]), 10, 64)
			if string(l[1]) == "pickup" {
				d.pickups = append(d.pickups, time.Unix(0, ns))
			} else {
				d.ends = append(d.ends, time.Unix(0, ns))
			}
		}
	}
	slices.SortFunc(d.pickups, time.Time.Compare)
	slices.SortFunc(d.ends, time.Time.Compare)
	d.start = enqueued
	if !withWebhook {
		d.start = d.pickups[0]
	}
	gl.AssertNoViolations(b)
	return d
}
