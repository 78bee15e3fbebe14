package runner

import (
	"errors"
	"fmt"
)

// Error codes. They say what kind of failure happened, independent of the
// transport: the web layer maps each to exactly one HTTP status.
const (
	ECONFLICT     = "conflict"     // a concurrent change or a duplicate (stale update, job already claimed)
	EINTERNAL     = "internal"     // a failure the user cannot fix
	EINVALID      = "invalid"      // the input is wrong
	ELIMIT        = "limit"        // a quota is reached (runners per user)
	ENOTFOUND     = "not_found"    // no such thing, or not yours
	EUNAUTHORIZED = "unauthorized" // not logged in, or a credential was refused
)

// Error is an application error with a machine-readable code and a message
// that is safe to show to the user. Wrap it with fmt.Errorf("...: %w", err)
// to add context for logs; ErrorCode and ErrorMessage still find it.
type Error struct {
	// Code is one of the E* constants.
	Code string
	// Message is written for the end user and never contains secrets.
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, "" for a nil
// error and EINTERNAL for any other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, ""
// for a nil error and a generic message for any other error, so that
// internal details never reach the user.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}
