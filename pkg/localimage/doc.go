// Package localimage owns running a job's `image:` on a developer's machine
// in local mode, with no Docker daemon, the way Lambda would run it. It is
// the executor's ImageRunner there (executor.Config.Images):
//
//   - the image is resolved for this machine's architecture (package
//     jobimage), with the job's DOCKER_AUTH_CONFIG and, for the job's own
//     GitLab registry, its CI_REGISTRY_USER and CI_REGISTRY_PASSWORD;
//   - its root file system is unpacked once per manifest digest into a
//     cache (package rootfs), jobs that need the same new image at the same
//     time waiting for one unpack;
//   - each step of the job (script, after_script) runs inside it with
//     rootfs.Run: in user, mount and PID namespaces of its own, as the
//     Lambda user (uid 993) with a read-only root and nothing of the host
//     visible but the job's directories.
//
// # The job's directories
//
// The executor checks out, restores caches and uploads artifacts on the
// host side, as it does on Lambda, so the job must see its directories at
// the paths the executor uses. Each job gets a directory under
// Images.JobsDir, which lies under /tmp: there a directory of this machine
// can be bound at its own path inside the image without changing the
// cached root, since /tmp is the one writable place of the image. It holds
// the job's builds directory and HOME, bound at their own paths, and the
// job's /tmp, which lasts from the first step to the last as Lambda's /tmp
// does. PrepareImage's Release removes it.
//
// # Errors
//
// What the job's image causes (a bad reference or DOCKER_AUTH_CONFIG, an
// image that cannot be found or read, has no variant for this machine's
// architecture, cannot be unpacked or has no /bin/sh) matches
// executor.ErrImage, and its message, fit for the job's trace, names the
// image and never a credential. Anything else is this machine's failure.
//
// Images is safe for concurrent use once configured.
package localimage
