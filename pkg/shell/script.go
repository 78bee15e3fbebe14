package shell

import (
	"strings"
)

// Trace colours, as the runner writes them.
const (
	ansiBoldGreen = "\x1b[32;1m"
	ansiYellow    = "\x1b[0;33m"
	ansiReset     = "\x1b[0;m"
)

// Script returns the script a step runs in shell (Bash or Sh): it sources
// the dotenv file GITLAB_ENV points at with allexport on, so KEY=value lines
// an earlier step appended are exported (the file is read as shell: quote a
// value that has spaces), sets `-eo pipefail` (sh: `-e`), then for each
// command echoes `$ <command>` in bold green and runs the command intact.
// A multi-line command is echoed as its first line followed by
// "# collapsed multi-line command", as the runner does. Blank commands are
// skipped.
func Script(shell string, commands []string) string {
	return script(shell, commands, false)
}

// script is Script, with shell tracing (`set -o xtrace`, CI_DEBUG_TRACE)
// from the first command on when xtrace is set.
func script(shell string, commands []string, xtrace bool) string {
	var b strings.Builder
	b.WriteString("if [ -f \"$GITLAB_ENV\" ]; then set -a; . \"$GITLAB_ENV\"; set +a; fi\n")
	if shell == Sh {
		b.WriteString("set -e\n")
	} else {
		b.WriteString("set -eo pipefail\n")
	}
	if xtrace {
		b.WriteString("set -o xtrace\n")
	}
	for _, c := range commands {
		if strings.TrimSpace(c) == "" {
			continue
		}
		// printf's format carries the colour codes as octal escapes, so the
		// script stays plain text; the command is a quoted argument, never
		// a format.
		b.WriteString(`printf '\033[32;1m%s\033[0;m\n' `)
		b.WriteString(quote("$ " + echoLine(c)))
		b.WriteString("\n")
		b.WriteString(c)
		b.WriteString("\n")
	}
	return b.String()
}

// echoLine is how a command is shown in the trace.
func echoLine(c string) string {
	c = strings.TrimSpace(c)
	if first, _, multi := strings.Cut(c, "\n"); multi {
		return strings.TrimRight(first, " \t\r") + " # collapsed multi-line command"
	}
	return c
}

// quote single-quotes s for sh and bash; any byte but NUL survives.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
