package jobimage

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Arch is a Lambda architecture, as a function's Architectures field and the
// LAMBDA_ARCH variable spell it.
type Arch string

// The architectures Lambda offers.
const (
	ARM64 Arch = "arm64"
	X8664 Arch = "x86_64"
)

// ParseArch returns the Arch spelled s ("arm64" or "x86_64"; "amd64" and
// "aarch64" are accepted as synonyms).
func ParseArch(s string) (Arch, error) {
	switch s {
	case "arm64", "aarch64":
		return ARM64, nil
	case "x86_64", "amd64":
		return X8664, nil
	}
	return "", fmt.Errorf("jobimage: unknown architecture %q: want arm64 or x86_64", s)
}

// Platform returns the OCI platform of a Lambda architecture: linux/arm64 or
// linux/amd64.
func (a Arch) Platform() v1.Platform {
	if a == ARM64 {
		return v1.Platform{OS: "linux", Architecture: "arm64"}
	}
	return v1.Platform{OS: "linux", Architecture: "amd64"}
}

func (a Arch) valid() bool { return a == ARM64 || a == X8664 }

// platformString spells a platform os/arch[/variant].
func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
