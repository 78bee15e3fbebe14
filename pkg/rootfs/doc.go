// Package rootfs owns running a job inside its container image on a
// developer's machine, with no Docker daemon, the way Lambda would run it:
// unpacking an image's root file system once per digest into a cache
// directory (Cache), and running a command in it (Run) as an unprivileged
// user with a read-only root, only /tmp writable (plus the directories the
// caller binds), /proc mounted and nothing of the host's file system
// visible.
//
// # How a command runs
//
// Run starts this very binary again (/proc/self/exe) as a small init, in
// new user, mount, PID, IPC and UTS namespaces, mapped to the caller's own
// uid and gid (so no privilege and no setuid helper are needed). The init
// is root inside its namespace: it mounts a tmpfs on /tmp and on /dev (with
// the host's null, zero, full, random and urandom bound in), binds the
// caller's directories, mounts /proc, remounts the image's root read-only,
// pivots into it and detaches the host's tree (pivot_root, which leaves no
// way back, rather than chroot). It then starts the command in one more,
// nested user namespace in which the only uid is the job's (LambdaUID by
// default), so the command has no capability at all and is never uid 0.
// When the command ends, the init exits with its status, and every process
// the command left behind dies with the PID namespace. The command leads a
// session and process group of its own; a signal the init receives
// (SIGTERM when Run's context ends) goes to that whole group.
//
// A re-exec is needed because mounts must happen between the creation of
// the namespaces and the command's start, which Go's SysProcAttr cannot
// express; the nested user namespace is needed because an unprivileged
// process can map only its own uid, which the init needs as root.
//
// # Contract
//
// A program that calls Run must call InitMain first thing in main (and a
// test package in TestMain): in the re-executed init it does the init's
// work and exits; otherwise it returns at once.
//
// Unpack and Run are safe for concurrent use. Errors wrap with %w and say
// which image or command failed; a command's own non-zero exit is an
// *exec.ExitError with its exit code.
//
// # Extraction rules
//
// Layers are applied in order, with OCI whiteouts (.wh.name removes name,
// .wh..wh..opq empties a directory of what lower layers put there). An
// entry whose name is absolute or has a ".." component fails the unpack;
// every path is resolved inside the root (symbolic links in it, absolute or
// relative, are followed as if the root were /), so no entry is ever
// written outside it; setuid and setgid bits are dropped, since the cache
// lives on the host; device nodes are skipped (/dev is provided at run
// time).
package rootfs
