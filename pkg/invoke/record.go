package invoke

import (
	"encoding/json"
	"time"
)

// Conditions of a destination record.
const (
	// ConditionSuccess: the function returned a response.
	ConditionSuccess = "Success"
	// ConditionRetriesExhausted: the function failed (error, crash,
	// timeout) on every attempt.
	ConditionRetriesExhausted = "RetriesExhausted"
	// ConditionEventAgeExceeded: the event waited too long in the queue
	// and was never run.
	ConditionEventAgeExceeded = "EventAgeExceeded"
)

// FunctionErrorUnhandled is responseContext.functionError for a handler
// that returned an error, panicked, crashed or timed out.
const FunctionErrorUnhandled = "Unhandled"

// Record is the invocation record Lambda sends to a function's on-success
// and on-failure destinations for an asynchronous invocation.
type Record struct {
	Version         string          `json:"version"`
	Timestamp       time.Time       `json:"timestamp"`
	RequestContext  RequestContext  `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext ResponseContext `json:"responseContext"`
	// ResponsePayload is the function's response, or on failure an
	// ErrorPayload; absent when the event was never run.
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RequestContext says which invocation the record is about.
type RequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionARN            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// ResponseContext says how the invocation ended.
type ResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	// FunctionError is "Unhandled" (or "Handled") when the function
	// failed, "" on success.
	FunctionError string `json:"functionError,omitempty"`
}

// ErrorPayload is the response payload of a failed invocation.
type ErrorPayload struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType,omitempty"`
	StackTrace   []string `json:"stackTrace,omitempty"`
}

// Failed reports whether the invocation failed or never ran.
func (r Record) Failed() bool {
	return r.RequestContext.Condition != ConditionSuccess || r.ResponseContext.FunctionError != ""
}

// Error returns the error payload of a failed invocation; ok is false when
// the response payload is not one.
func (r Record) Error() (e ErrorPayload, ok bool) {
	if len(r.ResponsePayload) == 0 || json.Unmarshal(r.ResponsePayload, &e) != nil {
		return ErrorPayload{}, false
	}
	return e, e.ErrorMessage != "" || e.ErrorType != ""
}

// FunctionName returns the function's name from its ARN
// (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]), or
// the ARN itself when it is not one.
func (r Record) FunctionName() string {
	arn := r.RequestContext.FunctionARN
	const marker = ":function:"
	for i := 0; i+len(marker) <= len(arn); i++ {
		if arn[i:i+len(marker)] == marker {
			name := arn[i+len(marker):]
			for j := 0; j < len(name); j++ {
				if name[j] == ':' {
					return name[:j]
				}
			}
			return name
		}
	}
	return arn
}
