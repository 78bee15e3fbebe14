package preparer_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/lambdatest"
	"gitlab-serverless-runner/pkg/runner"
)

// BenchmarkStartOnAPreparedImage compares the start of a job on an image
// whose function is already prepared with the start of the same job on a
// runtime's executor (zip). The image job pays the preparer's hand-off
// (resolve the tag, find the function, invoke it: prepare-ms, against the
// in-process registry, moto_server and DynamoDB Local) and runs in its
// image's root file system; both run under the emulator, each invocation
// in a fresh process (the executor ends its environment after one job),
// from the invocation to the executor's response. extra-start-ms is
// prepare-ms + image-job-ms - zip-job-ms. What Lambda adds to a container
// image's cold start (pulling and caching its layers) is not measured
// here.
func BenchmarkStartOnAPreparedImage(b *testing.B) {
	w := newWorld(b)
	arch, exeFile := w.useBuiltExecutor(b)
	job := func(image bool) gitlabtest.Job {
		spec := imageJob(w.image, string(arch), "true")
		spec.Variables = append(spec.Variables, gitlab.Variable{Key: "GIT_STRATEGY", Value: "none"})
		if !image {
			spec.Image = nil
		}
		return w.gl.EnqueueJob(w.project, spec)
	}
	// The first job prepares the image.
	first := job(true)
	if out, err := w.preparer().Handle(context.Background(), w.take()[0]); err != nil || out.Failed {
		b.Fatalf("Handle = %+v, %v", out, err)
	}
	fd := w.handedEvents()[first.ID].Event.Dispatch
	_ = w.store.ReleaseSlot(context.Background(), runner.Slot{RunnerID: fd.RunnerID, Index: fd.SlotIndex, Token: fd.SlotToken})
	imgFn := w.startImageFunction(b, w.handedEvents()[first.ID].Function)
	zipFn := lambdatest.Start(b, exeFile, lambdatest.Options{Env: map[string]string{
		"ALLOW_HTTP_GITLAB": "true", "ALLOW_PRIVATE_GITLAB": "true", "EXECUTOR_MARGIN_SECONDS": "5",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": "120", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
		"EXECUTOR_BUILDS_DIR": b.TempDir() + "/builds", "EXECUTOR_HOME_DIR": b.TempDir() + "/home",
	}})
	invoke := func(fn *lambdatest.Function, payload []byte) time.Duration {
		ev, err := dispatch.Decode(payload)
		if err != nil || ev.Job == nil {
			b.Fatalf("no executor event: %v", err)
		}
		// The finisher's part: the job's slot is free again after it.
		defer func() {
			d := ev.Dispatch
			_ = w.store.ReleaseSlot(context.Background(), runner.Slot{RunnerID: d.RunnerID, Index: d.SlotIndex, Token: d.SlotToken})
		}()
		start := time.Now()
		resp, err := fn.Invoke(context.Background(), payload)
		d := time.Since(start)
		var res dispatch.Result
		if err != nil || resp.FunctionError != "" || json.Unmarshal(resp.Payload, &res) != nil || res.State != "success" {
			b.Fatalf("invoke: %v %s %s\n%s", err, resp.FunctionError, resp.Payload, fn.Logs())
		}
		return d
	}
	p := w.preparer()
	var prep, img, zip time.Duration
	n := 0
	for b.Loop() {
		j := job(true)
		payload := w.take()[0]
		start := time.Now()
		if out, err := p.Handle(context.Background(), payload); err != nil || out.Failed {
			b.Fatalf("Handle = %+v, %v", out, err)
		}
		prep += time.Since(start)
		h := w.handedEvents()[j.ID]
		if h.Event.Image.Prepared {
			b.Fatal("the image was prepared again")
		}
		ev, _ := h.Event.Marshal()
		img += invoke(imgFn.fn, ev)

		z := job(false)
		if _, err := w.poller.Poll(context.Background(), dispatch.Poll{RunnerID: w.runner.ID, Reason: dispatch.PollSchedule}); err != nil {
			b.Fatal(err)
		}
		var zev []byte
		for _, c := range w.polls.Accepted() {
			if e, err := c.Event(); err == nil && e.Job.ID == z.ID {
				zev = c.Payload
			}
		}
		zip += invoke(zipFn, zev)
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / float64(n) }
	b.ReportMetric(ms(prep), "prepare-ms")
	b.ReportMetric(ms(img), "image-job-ms")
	b.ReportMetric(ms(zip), "zip-job-ms")
	b.ReportMetric(ms(prep+img-zip), "extra-start-ms")
}
