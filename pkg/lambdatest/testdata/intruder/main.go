// Command intruder is a hostile CI job for the tests of issue 10 ("one job,
// one Lambda environment"). Run as a job inside a Lambda execution
// environment, it does what any job can do there:
//
//  1. find the Runtime API without AWS_LAMBDA_RUNTIME_API: it reads the
//     listening loopback sockets in /proc/net/tcp and /proc/net/tcp6 and
//     asks each (Lambda's port 9001 first) for
//     GET /2018-06-01/runtime/invocation/next; the one that answers 200 with
//     a Lambda-Runtime-Aws-Request-Id is the API, and its answer is the
//     running invocation's event, read again ("reread");
//  2. post a forged response for that invocation ("forge");
//  3. wait on /next, -next times, for whatever the environment receives
//     next ("next").
//
// It reports every step as one JSON object per line to -report: a file it
// appends to (each line is written whole, so a frozen or killed intruder
// leaves complete lines), an http:// URL it POSTs each line to, or standard
// output when empty. lambdatest.IntruderStep decodes a line.
//
//	intruder -report /tmp/seen.jsonl -next 1 -next-timeout 60s
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// step is one report line; lambdatest.IntruderStep mirrors it.
type step struct {
	Step      string          `json:"step"`
	Time      time.Time       `json:"time"`
	PID       int             `json:"pid"`
	EnvHasAPI bool            `json:"env_has_api,omitempty"`
	Listeners []string        `json:"listeners,omitempty"`
	API       string          `json:"api,omitempty"`
	N         int             `json:"n,omitempty"`
	Status    int             `json:"status,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	TenantID  string          `json:"tenant_id,omitempty"`
	Event     json.RawMessage `json:"event,omitempty"`
	Body      string          `json:"body,omitempty"`
	Error     string          `json:"error,omitempty"`
}

var report func(step)

func main() {
	target := flag.String("report", "", "file or http:// URL to report to (standard output when empty)")
	forged := flag.String("forge", `{"state":"success","reported":true}`, "response to post for the running invocation")
	next := flag.Int("next", 1, "how many times to wait on /next after forging")
	nextTimeout := flag.Duration("next-timeout", 0, "longest wait on one /next (0: no limit)")
	probeTimeout := flag.Duration("probe-timeout", 2*time.Second, "longest wait on one candidate while looking for the API")
	flag.Parse()
	report = reporter(*target)

	_, envHasAPI := os.LookupEnv("AWS_LAMBDA_RUNTIME_API")
	listeners := loopbackListeners()
	report(step{Step: "start", EnvHasAPI: envHasAPI, Listeners: listeners})

	api, reread, ok := find(listeners, *probeTimeout)
	if !ok {
		report(step{Step: "discover", Error: "no listening socket answered as the Runtime API"})
		os.Exit(2)
	}
	reread.Step, reread.API = "reread", api
	report(reread)

	resp, err := http.Post("http://"+api+"/2018-06-01/runtime/invocation/"+reread.RequestID+"/response", "application/json", strings.NewReader(*forged))
	forge := step{Step: "forge", API: api, RequestID: reread.RequestID}
	if err != nil {
		forge.Error = err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		forge.Status, forge.Body = resp.StatusCode, string(b)
	}
	report(forge)

	client := &http.Client{Timeout: *nextTimeout}
	for n := 1; n <= *next; n++ {
		s := getNext(client, api)
		s.Step, s.API, s.N = "next", api, n
		report(s)
	}
	report(step{Step: "done"})
}

// find asks each candidate for /next and returns the first that answers as
// the Runtime API, with what it answered.
func find(listeners []string, timeout time.Duration) (string, step, bool) {
	client := &http.Client{Timeout: timeout}
	for _, addr := range listeners {
		s := getNext(client, addr)
		if s.Status == http.StatusOK && s.RequestID != "" {
			return addr, s, true
		}
	}
	return "", step{}, false
}

func getNext(client *http.Client, addr string) step {
	resp, err := client.Get("http://" + addr + "/2018-06-01/runtime/invocation/next")
	if err != nil {
		return step{Error: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	s := step{Status: resp.StatusCode, RequestID: resp.Header.Get("Lambda-Runtime-Aws-Request-Id"),
		TenantID: resp.Header.Get("Lambda-Runtime-Aws-Tenant-Id")}
	if json.Valid(body) {
		s.Event = body
	} else {
		s.Body = string(body)
	}
	return s
}

// loopbackListeners returns host:port for every listening TCP socket on a
// loopback or wildcard address that this process's network namespace
// shows, port 9001 (Lambda's Runtime API) first, then by port.
func loopbackListeners() []string {
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		out = append(out, listenersIn(f)...)
	}
	slices.SortFunc(out, func(a, b string) int {
		pa, pb := port(a), port(b)
		switch {
		case pa == pb:
			return strings.Compare(a, b)
		case pa == 9001:
			return -1
		case pb == 9001:
			return 1
		}
		return pa - pb
	})
	return slices.Compact(out)
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func listenersIn(file string) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
			continue
		}
		hexIP, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			continue
		}
		ip := parseIP(hexIP)
		switch {
		case ip == nil:
			continue
		case ip.IsUnspecified() && ip.To4() != nil:
			ip = net.IPv4(127, 0, 0, 1)
		case ip.IsUnspecified():
			ip = net.IPv6loopback
		case !ip.IsLoopback():
			continue
		}
		out = append(out, net.JoinHostPort(ip.String(), strconv.FormatUint(p, 10)))
	}
	return out
}

// parseIP decodes an address of /proc/net/tcp{,6}: 32-bit words in host
// (little-endian) byte order.
func parseIP(h string) net.IP {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

func reporter(target string) func(step) {
	pid := os.Getpid()
	return func(s step) {
		s.Time, s.PID = time.Now().UTC(), pid
		line, _ := json.Marshal(s)
		line = append(line, '\n')
		switch {
		case target == "":
			os.Stdout.Write(line)
		case strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://"):
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(target, "application/json", bytes.NewReader(line))
			if err != nil {
				fmt.Fprintf(os.Stderr, "intruder: report: %v\n", err)
				return
			}
			resp.Body.Close()
		default:
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				fmt.Fprintf(os.Stderr, "intruder: report: %v\n", err)
				return
			}
			f.Write(line)
			f.Close()
		}
	}
}
