// Command envinit turns a fresh set of namespaces into one Lambda-like
// execution environment and then becomes the Lambda Runtime Interface
// Emulator. lambdatest's Harness starts it in new network, PID and mount
// namespaces, already inside the environment's cgroup; envinit
//
//   - brings up the loopback interface, so the Runtime API can listen on
//     127.0.0.1:9001 as on Lambda, seen by nothing outside the environment;
//   - makes every mount private and mounts a /proc of the new PID
//     namespace, so the environment sees only its own processes;
//   - hides the directories it is given (the cgroup file systems) under an
//     empty read-only tmpfs;
//   - drops every capability, for good (bounding, inheritable and ambient
//     sets, no_new_privs), as a Lambda function has none;
//
// and executes the command after "--", the emulator, which becomes the
// environment's PID 1 as Lambda's init is.
//
//	envinit [-hide dir]... -- aws-lambda-rie [args...]
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	hide, argv, err := parseArgs(os.Args[1:])
	if err == nil {
		err = setUp(hide)
	}
	if err == nil {
		err = unix.Exec(argv[0], argv, os.Environ())
		err = fmt.Errorf("execute %s: %w", argv[0], err)
	}
	fmt.Fprintf(os.Stderr, "envinit: %v\n", err)
	os.Exit(111)
}

func parseArgs(args []string) (hide, argv []string, err error) {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-hide":
			if i+1 >= len(args) {
				return nil, nil, errors.New("-hide needs a directory")
			}
			hide = append(hide, args[i+1])
			i++
		case "--":
			if i+1 >= len(args) {
				return nil, nil, errors.New("no command after --")
			}
			return hide, args[i+1:], nil
		default:
			return nil, nil, fmt.Errorf("unknown argument %q", args[i])
		}
	}
	return nil, nil, errors.New("usage: envinit [-hide dir]... -- command [args...]")
}

func setUp(hide []string) error {
	if err := loopbackUp(); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, dir := range hide {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=555"); err != nil {
			return fmt.Errorf("hide %s: %w", dir, err)
		}
	}
	return dropCapabilities()
}

// loopbackUp sets the IFF_UP flag of "lo"; the kernel then gives it
// 127.0.0.1/8.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: read flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: set flags: %w", err)
	}
	return nil
}

// dropCapabilities empties the bounding set first (so no later execve of a
// root-owned program gets any capability back), then the ambient and
// inheritable sets; execve then leaves the permitted and effective sets
// empty too, even for user id 0.
func dropCapabilities() error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear the inheritable capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the last capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read the last capability: %w", err)
	}
	return n, nil
}
