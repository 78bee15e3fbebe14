package executor

import (
	"bytes"
	"io"
	"sync"
)

// rootMarkers are what programs print when the job needs root or a
// writable root file system: the kernel's EROFS message, and the package
// managers' own refusals to run without root.
var rootMarkers = [][]byte{
	[]byte("Read-only file system"),
	[]byte("are you root?"),                                         // apt, dpkg
	[]byte("you cannot perform this operation unless you are root"), // pacman
	[]byte("You need to be root to perform this command"),           // yum
	[]byte("has to be run with superuser privileges"),               // dnf
	[]byte("Unable to lock database: Permission denied"),            // apk
	[]byte("Failed to open apk database: Permission denied"),        // apk
	[]byte("Root privileges are required"),                          // zypper
}

// RootHint is the trace line of a step that failed because it needed root:
// why, and what to do instead.
const RootHint = "This job needs root or a writable root file system (it printed %q). On AWS Lambda a job runs as a non-root user on a read-only root file system, and only /tmp is writable, so apt-get install, apk add and other package managers cannot work. Use an image that already has what the job installs (build one FROM this image with the packages in it), or install into /tmp: pip install, npm install -g, gem install, go install and cargo install already do."

// rootDetector passes a step's output on and notes the first root marker
// in it, across write boundaries.
type rootDetector struct {
	w    io.Writer
	mu   sync.Mutex
	tail []byte
	hit  string
}

func newRootDetector(w io.Writer) *rootDetector { return &rootDetector{w: w} }

func (d *rootDetector) Write(p []byte) (int, error) {
	d.mu.Lock()
	if d.hit == "" {
		// A marker lies in p or across the boundary: in the tail and
		// p's first bytes. Only those are copied, not p.
		const keep = 64 // longer than every marker
		edge := append(d.tail, p[:min(len(p), keep)]...)
		for _, m := range rootMarkers {
			if bytes.Contains(edge, m) || bytes.Contains(p, m) {
				d.hit = string(m)
				break
			}
		}
		if len(p) >= keep {
			edge = p[len(p)-keep:]
		} else if len(edge) > keep {
			edge = edge[len(edge)-keep:]
		}
		d.tail = append(d.tail[:0], edge...)
	}
	d.mu.Unlock()
	return d.w.Write(p)
}

// found returns the marker seen, "" when none.
func (d *rootDetector) found() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hit
}
