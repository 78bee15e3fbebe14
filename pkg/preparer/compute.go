package preparer

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage"
)

// The job variables that choose an image function's compute.
const (
	VarMemory  = "LAMBDA_MEMORY"            // MB
	VarStorage = "LAMBDA_EPHEMERAL_STORAGE" // MB of /tmp
	VarArch    = "LAMBDA_ARCH"              // arm64 or x86_64
)

// Lambda's own limits on a function's memory and ephemeral storage, in MB.
const (
	LambdaMinMemory  = 128
	LambdaMaxMemory  = 10240
	LambdaMinStorage = 512
	LambdaMaxStorage = 10240
)

// Bounds are what the operator lets a job choose with LAMBDA_MEMORY,
// LAMBDA_EPHEMERAL_STORAGE and LAMBDA_ARCH, and what a job that sets none
// of them gets. The zero value of a field is its default (DefaultBounds).
type Bounds struct {
	MinMemory, MaxMemory, DefaultMemory    int
	MinStorage, MaxStorage, DefaultStorage int
	// Archs are the architectures allowed; DefaultArch is the first's
	// when empty.
	Archs       []jobimage.Arch
	DefaultArch jobimage.Arch
}

// DefaultBounds are the bounds of the zero Bounds: Lambda's own limits,
// 2048 MB of memory, 4096 MB of /tmp, both architectures, arm64 by default.
var DefaultBounds = Bounds{
	MinMemory: LambdaMinMemory, MaxMemory: LambdaMaxMemory, DefaultMemory: 2048,
	MinStorage: LambdaMinStorage, MaxStorage: LambdaMaxStorage, DefaultStorage: 4096,
	Archs: []jobimage.Arch{jobimage.ARM64, jobimage.X8664}, DefaultArch: jobimage.ARM64,
}

// withDefaults fills zero fields from DefaultBounds.
func (b Bounds) withDefaults() Bounds {
	d := DefaultBounds
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&b.MinMemory, d.MinMemory)
	set(&b.MaxMemory, d.MaxMemory)
	set(&b.DefaultMemory, min(max(d.DefaultMemory, b.MinMemory), b.MaxMemory))
	set(&b.MinStorage, d.MinStorage)
	set(&b.MaxStorage, d.MaxStorage)
	set(&b.DefaultStorage, min(max(d.DefaultStorage, b.MinStorage), b.MaxStorage))
	if len(b.Archs) == 0 {
		b.Archs = d.Archs
	}
	if b.DefaultArch == "" {
		b.DefaultArch = b.Archs[0]
	}
	return b
}

// Validate checks the bounds against Lambda's limits and each other.
func (b Bounds) Validate() error {
	b = b.withDefaults()
	switch {
	case b.MinMemory < LambdaMinMemory || b.MaxMemory > LambdaMaxMemory || b.MinMemory > b.MaxMemory:
		return fmt.Errorf("preparer: memory bounds %d–%d MB are not within Lambda's %d–%d", b.MinMemory, b.MaxMemory, LambdaMinMemory, LambdaMaxMemory)
	case b.DefaultMemory < b.MinMemory || b.DefaultMemory > b.MaxMemory:
		return fmt.Errorf("preparer: default memory %d MB is outside %d–%d", b.DefaultMemory, b.MinMemory, b.MaxMemory)
	case b.MinStorage < LambdaMinStorage || b.MaxStorage > LambdaMaxStorage || b.MinStorage > b.MaxStorage:
		return fmt.Errorf("preparer: ephemeral storage bounds %d–%d MB are not within Lambda's %d–%d", b.MinStorage, b.MaxStorage, LambdaMinStorage, LambdaMaxStorage)
	case b.DefaultStorage < b.MinStorage || b.DefaultStorage > b.MaxStorage:
		return fmt.Errorf("preparer: default ephemeral storage %d MB is outside %d–%d", b.DefaultStorage, b.MinStorage, b.MaxStorage)
	case !slices.Contains(b.Archs, b.DefaultArch):
		return fmt.Errorf("preparer: default architecture %s is not among the allowed %s", b.DefaultArch, archList(b.Archs))
	}
	return nil
}

// Compute is what one job runs on.
type Compute struct {
	Arch                jobimage.Arch
	MemoryMB, StorageMB int
}

// ComputeError is a job's compute variable that the bounds refuse. Its
// message is one line for the job's trace.
type ComputeError struct {
	Variable, Value, Allowed string
}

func (e *ComputeError) Error() string {
	return fmt.Sprintf("%s=%q is not allowed on this runner: %s", e.Variable, e.Value, e.Allowed)
}

// Choose returns the compute the job's variables ask for, or a
// *ComputeError for a value that is not a number (or an architecture), or
// lies outside the bounds. Unset variables take the defaults.
func (b Bounds) Choose(vars gitlab.Variables) (Compute, error) {
	b = b.withDefaults()
	c := Compute{Arch: b.DefaultArch, MemoryMB: b.DefaultMemory, StorageMB: b.DefaultStorage}
	size := func(name string, lo, hi, def int, out *int) error {
		s := strings.TrimSpace(vars.Get(name))
		if s == "" {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.ToUpper(s), "MB"))
		if err != nil || n < lo || n > hi {
			return &ComputeError{Variable: name, Value: s, Allowed: fmt.Sprintf(
				"set it to a number of MB from %d to %d, or leave it unset for %d", lo, hi, def)}
		}
		*out = n
		return nil
	}
	if err := size(VarMemory, b.MinMemory, b.MaxMemory, b.DefaultMemory, &c.MemoryMB); err != nil {
		return Compute{}, err
	}
	if err := size(VarStorage, b.MinStorage, b.MaxStorage, b.DefaultStorage, &c.StorageMB); err != nil {
		return Compute{}, err
	}
	if s := strings.TrimSpace(vars.Get(VarArch)); s != "" {
		a, err := jobimage.ParseArch(strings.ToLower(s))
		if err != nil || !slices.Contains(b.Archs, a) {
			return Compute{}, &ComputeError{Variable: VarArch, Value: s, Allowed: fmt.Sprintf(
				"set it to %s, or leave it unset for %s", archList(b.Archs), b.DefaultArch)}
		}
		c.Arch = a
	}
	return c, nil
}

func archList(as []jobimage.Arch) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, " or ")
}
