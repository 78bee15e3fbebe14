package executor

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// credentialNames are the variables through which Lambda hands a function
// its role's credentials. The executor never calls AWS itself (Lambda
// delivers its result to the finisher and its logs are its standard
// output), so it keeps none of them.
var credentialNames = map[string]bool{
	"AWS_ACCESS_KEY_ID":                      true,
	"AWS_SECRET_ACCESS_KEY":                  true,
	"AWS_SESSION_TOKEN":                      true,
	"AWS_SECURITY_TOKEN":                     true,
	"AWS_CONTAINER_AUTHORIZATION_TOKEN":      true,
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": true,
}

// credentialPrefixes name families of credential variables.
var credentialPrefixes = []string{"AWS_CONTAINER_CREDENTIALS_"}

// HardenProcess protects the running executor from the jobs it starts.
// On Lambda a job runs as the same Unix user as the executor, so without
// it a job could read /proc/<executor>/environ (the role's credentials, as
// Lambda put them in the initial environment), read /proc/<executor>/mem
// (the job events in memory, with other settings) or ptrace the executor.
//
// HardenProcess clears the process's dumpable flag (prctl
// PR_SET_DUMPABLE 0): the kernel then refuses those files and ptrace to
// every process without CAP_SYS_PTRACE, whatever its user. Children are
// unaffected, because execve makes a new program dumpable again, so jobs
// keep their own /proc. It also removes the credential variables from the
// process's environment, so that nothing the executor starts can inherit
// them even by mistake. (Without cgo the kernel's copy of the initial
// environment, which /proc/<pid>/environ shows, is not rewritten: that is
// what the dumpable flag protects.)
//
// Call it once at start, only in the Lambda function: it makes a debugger
// or a core dump of the process impossible, and it removes AWS credentials
// that an in-process caller (such as a development mode that runs every
// function in one process) may still need.
func HardenProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("executor: clear the dumpable flag: %w", err)
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if isCredential(name) {
			if err := os.Unsetenv(name); err != nil {
				return fmt.Errorf("executor: remove %s from the environment: %w", name, err)
			}
		}
	}
	return nil
}

func isCredential(name string) bool {
	if credentialNames[name] {
		return true
	}
	for _, p := range credentialPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
