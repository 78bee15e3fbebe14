package lambdatest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The harness freezes an environment with the cgroup v2 freezer. Every
// process an environment starts is born in its cgroup (the first one is
// cloned into it, and children inherit it), whatever it does afterwards:
// double forks, setsid, reparenting to PID 1 and new process groups do
// not leave a cgroup, and within the environment nothing can move a
// process out (the cgroup file systems are hidden and the processes hold
// no capability). Writing 1 to cgroup.freeze stops every task of the
// cgroup, atomically with respect to forks, and "frozen 1" in
// cgroup.events confirms it; the tasks do not see it happen (no SIGSTOP,
// no SIGCHLD to a parent, no change a shell's job control reports).
// cgroup.kill ends every task at once, frozen or not. Signals sent
// process by process (SIGSTOP/SIGCONT over a PID namespace) would race
// with forks and be visible to the processes, so they are not used.

// cgroup is one directory of the cgroup v2 hierarchy.
type cgroup struct{ dir string }

// cgroupBase returns this process's own cgroup in the cgroup v2 hierarchy,
// under which the harness makes the environments' cgroups.
func cgroupBase() (string, error) {
	mounts, err := mountsOfType("cgroup2")
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		return "", errors.New("no cgroup2 file system is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	path := "/"
	for line := range strings.SplitSeq(string(own), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			path = p
		}
	}
	m := mounts[0]
	rel, ok := strings.CutPrefix(path, m.root)
	if !ok {
		rel = "/"
	}
	return filepath.Join(m.point, rel), nil
}

type mount struct{ point, root, fstype string }

// mountsOfType lists the mounts of /proc/self/mountinfo whose file system
// type is one of types.
func mountsOfType(types ...string) ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		left, right, ok := strings.Cut(sc.Text(), " - ")
		lf, rf := strings.Fields(left), strings.Fields(right)
		if !ok || len(lf) < 5 || len(rf) < 1 {
			continue
		}
		for _, t := range types {
			if rf[0] == t {
				out = append(out, mount{point: unescapeMount(lf[4]), root: unescapeMount(lf[3]), fstype: t})
			}
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupMountDirs returns the directories to hide from an environment so
// that it sees no cgroup file system: /sys/fs/cgroup when the cgroup
// mounts are there, and any cgroup mount elsewhere.
func cgroupMountDirs() ([]string, error) {
	mounts, err := mountsOfType("cgroup", "cgroup2")
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range mounts {
		dir := m.point
		if dir == "/sys/fs/cgroup" || strings.HasPrefix(dir, "/sys/fs/cgroup/") {
			dir = "/sys/fs/cgroup"
		}
		if !seen[dir] {
			seen[dir] = true
			out = append(out, dir)
		}
	}
	return out, nil
}

func newCgroup(dir string) (*cgroup, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup %s: %w", dir, err)
	}
	return &cgroup{dir: dir}, nil
}

func (c *cgroup) write(file, value string) error {
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("write %s of %s: %w", file, c.dir, err)
	}
	return nil
}

// event returns the value of key in cgroup.events ("populated", "frozen").
func (c *cgroup) event(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.events"))
	if err != nil {
		return "", fmt.Errorf("read events of %s: %w", c.dir, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("read events of %s: no %q", c.dir, key)
}

// waitEvent waits until key has value in cgroup.events.
func (c *cgroup) waitEvent(key, value string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		v, err := c.event(key)
		if err != nil {
			return err
		}
		if v == value {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: %s is %s after %s, want %s", c.dir, key, v, timeout, value)
		}
		time.Sleep(time.Millisecond)
	}
}

// freeze stops every process of the cgroup and returns once the kernel
// says all are frozen.
func (c *cgroup) freeze() error {
	if err := c.write("cgroup.freeze", "1"); err != nil {
		return err
	}
	return c.waitEvent("frozen", "1", 10*time.Second)
}

// thaw lets the processes of the cgroup run again.
func (c *cgroup) thaw() error {
	if err := c.write("cgroup.freeze", "0"); err != nil {
		return err
	}
	return c.waitEvent("frozen", "0", 10*time.Second)
}

// frozen reports whether the kernel says the cgroup is frozen.
func (c *cgroup) frozen() bool {
	v, err := c.event("frozen")
	return err == nil && v == "1"
}

// procs returns the (host) process ids in the cgroup.
func (c *cgroup) procs() []int {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for f := range bytes.FieldsSeq(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// kill ends every process of the cgroup, frozen or not, and removes it
// once it is empty. Kernels without cgroup.kill (before 5.14) get SIGKILL
// process by process while the cgroup is frozen, so nothing forks in
// between.
func (c *cgroup) kill() error {
	if err := c.write("cgroup.kill", "1"); err != nil {
		_ = c.write("cgroup.freeze", "1")
		for _, pid := range c.procs() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = c.write("cgroup.freeze", "0")
	}
	if err := c.waitEvent("populated", "0", 10*time.Second); err != nil {
		return err
	}
	return c.remove()
}

// remove deletes the (empty) cgroup directory.
func (c *cgroup) remove() error {
	var err error
	for range 100 {
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", c.dir, err)
}

// removeStaleCgroups removes what harnesses of test processes that no
// longer run left under base (a test binary that was killed): their
// environments died with them, their cgroups stay until removed.
func removeStaleCgroups(base string) {
	entries, _ := os.ReadDir(base)
	for _, d := range entries {
		rest, ok := strings.CutPrefix(d.Name(), "lambdatest-")
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || !d.IsDir() || err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		parent := &cgroup{dir: filepath.Join(base, d.Name())}
		children, _ := os.ReadDir(parent.dir)
		for _, c := range children {
			if c.IsDir() {
				_ = (&cgroup{dir: filepath.Join(parent.dir, c.Name())}).kill()
			}
		}
		_ = parent.kill()
	}
}
