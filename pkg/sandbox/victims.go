package sandbox

import "slices"

// Scope says which processes a clean-up may kill.
type Scope struct {
	// SystemWide kills every process that is not protected. It is meant only
	// for a Lambda execution environment, where everything besides the
	// executor, its ancestors and the baseline is something a job left.
	SystemWide bool
	// Descendants kills every descendant of self, through any depth.
	Descendants bool
	// Groups are the process groups the job owns. Without SystemWide only
	// their members are killed. The caller's own process group is ignored.
	Groups []int
	// Keep lists processes that must survive, typically a Baseline taken
	// before the first job (Lambda extensions, the runtime's init).
	Keep []Key
}

// Victims returns, in ascending order, the pids that a clean-up with scope
// should kill out of procs, as seen by the process self: every process
// when scope.SystemWide, self's descendants when scope.Descendants, and the
// members of scope.Groups. It never returns:
// pid 0 or 1, self, any ancestor of self (under the Lambda runtime interface
// emulator the emulator is our parent; under Lambda the runtime's init is),
// kernel threads, zombies (already dead) or a process in scope.Keep. It is a
// pure function so that the decision can be tested without killing anything.
func Victims(procs []Process, self int, scope Scope) []int {
	byPID := make(map[int]Process, len(procs))
	for _, p := range procs {
		byPID[p.PID] = p
	}
	protected := map[int]bool{0: true, 1: true, self: true}
	// Walk up from self; the visited check stops a cycle in a corrupt list.
	for pid := self; ; {
		p, ok := byPID[pid]
		if !ok || protected[p.PPID] {
			break
		}
		protected[p.PPID] = true
		pid = p.PPID
	}
	keep := make(map[Key]bool, len(scope.Keep))
	for _, k := range scope.Keep {
		keep[k] = true
	}
	groups := make(map[int]bool, len(scope.Groups))
	for _, g := range scope.Groups {
		if g > 1 && g != byPID[self].PGID {
			groups[g] = true
		}
	}

	var below map[int]bool
	if scope.Descendants {
		below = descendants(procs, self)
	}

	var out []int
	for _, p := range procs {
		switch {
		case protected[p.PID], p.Kernel, p.State == "Z", keep[p.Key()]:
			continue
		case scope.SystemWide, groups[p.PGID], below[p.PID]:
			out = append(out, p.PID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// descendants returns the pids below self in procs, through any depth.
func descendants(procs []Process, self int) map[int]bool {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	below := map[int]bool{}
	queue := []int{self}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if !below[c] && c != self {
				below[c] = true
				queue = append(queue, c)
			}
		}
	}
	return below
}
