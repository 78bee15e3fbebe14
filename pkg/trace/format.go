package trace

import (
	"fmt"
	"strings"
	"time"
)

// ANSI sequences gitlab-runner uses in traces; GitLab's log viewer renders
// them.
const (
	ANSIBoldCyan   = "\x1b[36;1m"
	ANSIBoldGreen  = "\x1b[32;1m"
	ANSIBoldYellow = "\x1b[33;1m"
	ANSIBoldRed    = "\x1b[31;1m"
	ANSIYellow     = "\x1b[0;33m"
	ANSIReset      = "\x1b[0;m"
	ANSIClearLine  = "\x1b[0K"
)

// SectionStartLine returns the marker that opens section name at t,
// followed by header in bold cyan on its own line (no header line if
// header is empty). Characters GitLab does not accept in section names are
// replaced by '_'.
func SectionStartLine(t time.Time, name, header string) string {
	s := fmt.Sprintf("section_start:%d:%s\r%s", t.Unix(), SectionName(name), ANSIClearLine)
	if header != "" {
		s += ANSIBoldCyan + header + ANSIReset + "\n"
	}
	return s
}

// SectionEndLine returns the marker that closes section name at t.
func SectionEndLine(t time.Time, name string) string {
	return fmt.Sprintf("section_end:%d:%s\r%s", t.Unix(), SectionName(name), ANSIClearLine)
}

// SectionName keeps the characters GitLab accepts in a section name
// (letters, digits, '_', '.', '-') and replaces the others with '_'.
func SectionName(name string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r == '_' || r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, name)
}
