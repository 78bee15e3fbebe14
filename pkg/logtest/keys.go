package logtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// RepeatedKeys returns the keys that one JSON log line holds more than
// once in the same object, at any depth ("group.key" inside a group).
// slog's JSON handler writes an attribute as often as it was added, so a
// logger that adds job_id on top of a logger that has it already writes
// "job_id" twice on every line, which decoders then keep only one of. An
// error means the line is not one JSON object.
func RepeatedKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("logtest: read log line: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("logtest: log line is not a JSON object")
	}
	var repeated []string
	if err := walkObject(dec, "", &repeated); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("logtest: log line holds more than one JSON value")
	}
	return repeated, nil
}

// walkObject reads the members of an object whose '{' was read, up to and
// including its '}'.
func walkObject(dec *json.Decoder, prefix string, repeated *[]string) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("logtest: read log line: %w", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			*repeated = append(*repeated, prefix+key)
		}
		seen[key] = true
		if err := walkValue(dec, prefix+key+".", repeated); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func walkValue(dec *json.Decoder, prefix string, repeated *[]string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("logtest: read log line: %w", err)
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, prefix, repeated)
	case json.Delim('['):
		for dec.More() {
			if err := walkValue(dec, prefix, repeated); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}
