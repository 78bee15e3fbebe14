package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxEventBytes bounds an event fetched from payload_url.
const MaxEventBytes = 64 << 20

// Open decodes an executor payload and, when it is a reference
// (payload_url), fetches the whole event with hc (http.DefaultClient when
// nil). It returns the event and the bytes it was decoded from, so that a
// caller failing the job can still read what it can of them. The event is
// not validated. Errors never quote the URL, which carries a signature.
func Open(ctx context.Context, hc *http.Client, raw []byte) (Event, []byte, error) {
	ev, err := Decode(raw)
	if err != nil || ev.PayloadURL == "" {
		return ev, raw, err
	}
	if _, err := parseHTTPURL(ev.PayloadURL); err != nil {
		return ev, raw, fmt.Errorf("%w: payload_url: %w", ErrInvalidEvent, err)
	}
	body, err := fetch(ctx, hc, ev.PayloadURL)
	if err != nil {
		return ev, raw, err
	}
	full, err := Decode(body)
	if err != nil {
		return full, body, err
	}
	if full.PayloadURL != "" {
		return full, body, fmt.Errorf("%w: the event at payload_url has a payload_url itself", ErrInvalidEvent)
	}
	return full, body, nil
}

func fetch(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: payload_url: build request", ErrInvalidEvent)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dispatch: fetch payload_url: %w", errors.Unwrap(err)) // *url.Error would repeat the signed URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("dispatch: fetch payload_url: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxEventBytes+1))
	if err != nil {
		return nil, fmt.Errorf("dispatch: read payload_url body: %w", err)
	}
	if len(b) > MaxEventBytes {
		return nil, fmt.Errorf("%w: the event at payload_url is larger than %d bytes", ErrInvalidEvent, MaxEventBytes)
	}
	return b, nil
}
