package imagefn

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"gitlab-serverless-runner/pkg/jobimage"
)

// Variant is what an image executor function is made for: one base image
// (manifest digest), one architecture, one memory and ephemeral storage
// size, one executor build. Two jobs with equal Variants share a function.
type Variant struct {
	// Base is the job image's manifest digest, "sha256:…".
	Base string
	// Arch is the function's architecture.
	Arch jobimage.Arch
	// MemoryMB and StorageMB are the function's memory and ephemeral
	// storage (/tmp) in MB.
	MemoryMB, StorageMB int32
	// Executor is the executor binary's digest, "sha256:…".
	Executor string
}

// Key returns the variant's record key:
// "<base>/<arch>/<memory>/<storage>/<executor>".
func (v Variant) Key() string {
	return strings.Join([]string{v.Base, string(v.Arch), strconv.Itoa(int(v.MemoryMB)),
		strconv.Itoa(int(v.StorageMB)), v.Executor}, "/")
}

// FunctionName returns the variant's function name: prefix, "-img-" and 20
// hex digits of a hash of the key (Lambda allows 64 characters).
func (v Variant) FunctionName(prefix string) string {
	sum := sha256.Sum256([]byte(v.Key()))
	return prefix + "-img-" + hex.EncodeToString(sum[:])[:20]
}

// validate checks the variant against Lambda's limits.
func (v Variant) validate() error {
	if !strings.HasPrefix(v.Base, "sha256:") || len(v.Base) != 71 {
		return fmt.Errorf("base %q is not a sha256 digest", v.Base)
	}
	if !strings.HasPrefix(v.Executor, "sha256:") || len(v.Executor) != 71 {
		return fmt.Errorf("executor %q is not a sha256 digest", v.Executor)
	}
	if v.Arch != jobimage.ARM64 && v.Arch != jobimage.X8664 {
		return fmt.Errorf("architecture %q is not arm64 or x86_64", v.Arch)
	}
	if v.MemoryMB < 128 || v.MemoryMB > 10240 {
		return fmt.Errorf("memory %d MB is outside Lambda's 128–10240", v.MemoryMB)
	}
	if v.StorageMB < 512 || v.StorageMB > 10240 {
		return fmt.Errorf("ephemeral storage %d MB is outside Lambda's 512–10240", v.StorageMB)
	}
	return nil
}

func (v Variant) architecture() lambdatypes.Architecture {
	if v.Arch == jobimage.ARM64 {
		return lambdatypes.ArchitectureArm64
	}
	return lambdatypes.ArchitectureX8664
}
