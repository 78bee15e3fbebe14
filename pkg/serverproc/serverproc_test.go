package serverproc_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/serverproc"
)

func TestStopEndsTheServer(t *testing.T) {
	p, err := serverproc.Start(serverproc.Options{Path: "/bin/sleep", Args: []string{"600"}})
	if err != nil {
		t.Fatal(err)
	}
	if !serverproc.Alive(p.PID()) {
		t.Fatalf("the server (pid %d) is not running after Start", p.PID())
	}
	p.Stop()
	p.Stop() // a second Stop returns at once
	if serverproc.Alive(p.PID()) {
		t.Errorf("the server (pid %d) still runs after Stop", p.PID())
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done is not closed after Stop")
	}
}

func TestAServerThatExitsAtStartIsReported(t *testing.T) {
	p, err := serverproc.Start(serverproc.Options{Path: "/bin/sh", Args: []string{"-c", "echo no such option >&2; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	port, err := serverproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	err = serverproc.WaitHTTP(context.Background(), "http://127.0.0.1:"+strconv.Itoa(port), time.Minute, p.Done())
	if err == nil || !strings.Contains(err.Error(), "exited before answering") {
		t.Errorf("WaitHTTP = %v, want the server's exit", err)
	}
	if !strings.Contains(p.Tail(), "no such option") {
		t.Errorf("Tail() = %q, want the server's output", p.Tail())
	}
}
