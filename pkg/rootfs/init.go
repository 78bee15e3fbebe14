package rootfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// InitMain must be called first thing in main (and TestMain) of every
// program that calls Run. In the init Run re-executes, it sets up the root
// and runs the command, then exits with the command's status; everywhere
// else it returns at once.
func InitMain() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 || os.Getpid() != 1 {
		return
	}
	os.Exit(runInit())
}

// runInit is the init: pid 1 of a new PID namespace, root of a new user
// namespace that maps only the caller's uid, in a new mount namespace.
func runInit() int {
	cfgFile, stat := os.NewFile(3, "config"), os.NewFile(4, "status")
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	var cfg initConfig
	err := json.NewDecoder(io.LimitReader(cfgFile, 1<<20)).Decode(&cfg)
	cfgFile.Close()
	if err != nil {
		statusf(stat, "read the init's configuration: %v", err)
		return setupFailed
	}
	if err := setupRoot(cfg); err != nil {
		statusf(stat, "%v", err)
		return setupFailed
	}
	prog, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		statusf(stat, "%v", err)
		return setupFailed
	}
	cmd := &exec.Cmd{Path: prog, Args: cfg.Args, Env: cfg.Env, Dir: cfg.Dir,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	// One more user namespace, where the only uid is the job's: the
	// command holds no capability and is never root.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: cfg.UID, HostID: 0, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: cfg.GID, HostID: 0, Size: 1}},
		GidMappingsEnableSetgroups: false,
		Setsid:                     true,
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		statusf(stat, "start %s: %v", cfg.Args[0], unwrapExec(err))
		return setupFailed
	}
	stat.Close()
	go func() {
		// The command leads its own session and process group: the signal
		// reaches what it started too.
		for s := range signals {
			_ = syscall.Kill(-cmd.Process.Pid, s.(syscall.Signal))
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		return setupFailed
	}
}

func unwrapExec(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// devices are bound from the host into the command's /dev.
var devices = []string{"null", "zero", "full", "random", "urandom"}

// setupRoot mounts the command's view of the world and pivots into it.
func setupRoot(cfg initConfig) error {
	root := cfg.Root
	mount := func(src, dst, fstype string, flags uintptr, data string) error {
		if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", src, dst, err)
		}
		return nil
	}
	inside := func(p string) (string, error) { return securejoin.SecureJoin(root, p) }

	// Nothing mounted here reaches the host's namespace.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := mount(root, root, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	tmp, err := inside("/tmp")
	if err != nil {
		return err
	}
	if err := mount("tmpfs", tmp, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("mode=1777,size=%d", cfg.TmpSize)); err != nil {
		return err
	}
	for _, b := range cfg.Binds {
		dst, err := inside(b.Target)
		if err != nil {
			return err
		}
		fi, err := os.Stat(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist) && underTmp(b.Target):
			// /tmp is the new tmpfs: making the mount point writes nothing
			// to the cached image.
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("bind %s: %w", b.Target, err)
			}
		case err != nil:
			return fmt.Errorf("bind %s: the directory does not exist in the image (bind under /tmp instead)", b.Target)
		case !fi.IsDir():
			return fmt.Errorf("bind %s: not a directory in the image", b.Target)
		}
		if err := mount(b.Source, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
	}
	proc, err := inside("/proc")
	if err != nil {
		return err
	}
	if err := mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	dev, err := inside("/dev")
	if err != nil {
		return err
	}
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=65536"); err != nil {
		return err
	}
	for _, d := range devices {
		p := filepath.Join(dev, d)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := mount("/dev/"+d, p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(dev, "shm"), 0o1777); err != nil {
		return err
	}

	// The image's root read-only, keeping the flags the kernel locks in a
	// user namespace.
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", root, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	for st1, ms := range map[int64]uintptr{unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_NOATIME: unix.MS_NOATIME,
		unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME} {
		if st.Flags&st1 != 0 {
			flags |= ms
		}
	}
	if err := mount("", root, "", flags, ""); err != nil {
		return fmt.Errorf("make the root read-only: %w", err)
	}

	// pivot_root, then detach the host's tree: nothing of it stays
	// reachable, unlike with chroot.
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if fi, err := os.Stat(cfg.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("working directory %s does not exist in the image", cfg.Dir)
	}
	return nil
}

func underTmp(p string) bool {
	c := path.Clean(p)
	return c == "/tmp" || strings.HasPrefix(c, "/tmp/")
}

// lookPath finds a command inside the new root, in env's PATH.
func lookPath(arg0 string, env []string) (string, error) {
	if strings.Contains(arg0, "/") {
		return arg0, nil
	}
	p := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			p = v
		}
	}
	for _, dir := range filepath.SplitList(p) {
		if dir == "" {
			dir = "."
		}
		cand := filepath.Join(dir, arg0)
		if fi, err := os.Stat(cand); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s: command not found in the image (PATH=%s)", arg0, p)
}
