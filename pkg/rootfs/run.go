package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"time"
)

// initArg0 is the init's argv[0]; InitMain recognises the re-executed
// binary by it.
const initArg0 = "gsr-rootfs-init"

// setupFailed is the init's exit status when it could not start the
// command; the reason arrives on the status pipe.
const setupFailed = 125

// The defaults of Command: the user Lambda runs container images as, and
// a /tmp as large as Lambda's default ephemeral storage.
const (
	DefaultUID     = 993
	DefaultGID     = 990
	DefaultTmpSize = 512 << 20
)

// defaultPath is searched for a command without a slash when Env sets no
// PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bind makes the host directory Source writable at Target inside the root.
// Target must exist in the image or lie under /tmp.
type Bind struct {
	Source, Target string
}

// Command is a command to run inside a root file system.
type Command struct {
	// Root is an unpacked root file system (Cache.Unpack).
	Root string
	// Args is the command and its arguments; Args[0] without a slash is
	// looked up in Env's PATH inside the root.
	Args []string
	// Env is the command's whole environment.
	Env []string
	// Dir is the working directory inside the root ("/" when empty).
	Dir string
	// Binds are host directories made writable inside the root.
	Binds []Bind
	// UID and GID are the command's user and group inside; zero means
	// DefaultUID and DefaultGID (uid 0 is never used).
	UID, GID int
	// TmpSize bounds /tmp in bytes (DefaultTmpSize when zero).
	TmpSize int64
	// Stdin, Stdout and Stderr are the command's; nil means /dev/null.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// KillGrace is how long the command's processes have to end after
	// SIGTERM when ctx ends, before all of them are killed; zero kills
	// them at once.
	KillGrace time.Duration
}

// initConfig is what Run sends the init on file descriptor 3.
type initConfig struct {
	Root    string   `json:"root"`
	Args    []string `json:"args"`
	Env     []string `json:"env"`
	Dir     string   `json:"dir"`
	Binds   []Bind   `json:"binds"`
	UID     int      `json:"uid"`
	GID     int      `json:"gid"`
	TmpSize int64    `json:"tmp_size"`
}

// Run runs c and waits for it. When ctx ends, the command's process group
// gets SIGTERM and, KillGrace later, every process the command started is
// killed (at once when KillGrace is zero). The error is nil on exit status 0, an
// *exec.ExitError for another status (exit code 128+n for signal n), or an
// error saying why the command could not start (no such command, a bind
// target missing, namespaces unavailable).
func Run(ctx context.Context, c Command) error {
	if len(c.Args) == 0 {
		return fmt.Errorf("rootfs: run: no command")
	}
	if c.Root == "" || !path.IsAbs(c.Root) {
		return fmt.Errorf("rootfs: run %s: root %q is not an absolute path", c.Args[0], c.Root)
	}
	cfg := initConfig{Root: c.Root, Args: c.Args, Env: c.Env, Dir: c.Dir, Binds: c.Binds,
		UID: c.UID, GID: c.GID, TmpSize: c.TmpSize}
	if cfg.UID == 0 {
		cfg.UID = DefaultUID
	}
	if cfg.GID == 0 {
		cfg.GID = DefaultGID
	}
	if cfg.TmpSize <= 0 {
		cfg.TmpSize = DefaultTmpSize
	}
	if cfg.Dir == "" {
		cfg.Dir = "/"
	}
	for _, b := range cfg.Binds {
		if !path.IsAbs(b.Source) || !path.IsAbs(b.Target) {
			return fmt.Errorf("rootfs: run %s: bind %s → %s: paths must be absolute", c.Args[0], b.Source, b.Target)
		}
	}
	payload, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("rootfs: run %s: %w", c.Args[0], err)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("rootfs: run %s: %w", c.Args[0], err)
	}
	defer cfgR.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		cfgW.Close()
		return fmt.Errorf("rootfs: run %s: %w", c.Args[0], err)
	}
	defer statR.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{initArg0}
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.ExtraFiles = []*os.File{cfgR, statW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if c.KillGrace > 0 {
		// The init passes SIGTERM on to the command's process group; when
		// the grace runs out, exec kills the init, and with it the PID
		// namespace.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = c.KillGrace
	}
	if err := cmd.Start(); err != nil {
		cfgW.Close()
		statW.Close()
		return fmt.Errorf("rootfs: run %s: start the init (are user namespaces allowed?): %w", c.Args[0], err)
	}
	statW.Close()
	go func() {
		_, _ = cfgW.Write(payload)
		cfgW.Close()
	}()
	// The init closes the status pipe once the command started, or writes
	// why it could not and exits.
	status, _ := io.ReadAll(io.LimitReader(statR, 64<<10))
	waitErr := cmd.Wait()
	if msg := strings.TrimSpace(string(status)); msg != "" {
		return fmt.Errorf("rootfs: run %s: %s", c.Args[0], msg)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("rootfs: run %s: %w", c.Args[0], ctx.Err())
	}
	return waitErr
}

// statusf writes a start failure to the status pipe.
func statusf(w io.Writer, format string, args ...any) {
	var b bytes.Buffer
	fmt.Fprintf(&b, format, args...)
	_, _ = w.Write(b.Bytes())
}
