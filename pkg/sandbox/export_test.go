package sandbox

import "syscall"

// Vanished exposes vanished to the black-box tests.
var Vanished = vanished

// Host is what DecideCleanup checks about a process.
type Host struct {
	PID, PPID       int
	OwnPIDNamespace bool
}

// DecideCleanup exposes the rules of ChooseCleanup for a given process.
func DecideCleanup(setting string, getenv func(string) string, h Host) (Cleanup, string, error) {
	return decideCleanup(setting, getenv, host{pid: h.PID, ppid: h.PPID, ownPIDNamespace: h.OwnPIDNamespace})
}

// RefuseSignals makes every signal to pid fail until the returned function
// is called, as for a process of another user: it stands for a process
// the clean-up cannot kill.
func RefuseSignals(pid int) (restore func()) {
	signal = func(p Process, sig syscall.Signal) bool {
		if p.PID == pid {
			return false
		}
		return signalProcess(p, sig)
	}
	return func() { signal = signalProcess }
}
