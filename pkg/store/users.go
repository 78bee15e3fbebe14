package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/guregu/dynamo/v2"

	"gitlab-serverless-runner/pkg/runner"
)

// userItem is a user as stored in the users table.
type userItem struct {
	Sub         string    `dynamo:"sub,hash"`
	Username    string    `dynamo:"username,omitempty"`
	RunnerCount int       `dynamo:"runner_count"`
	CreatedAt   time.Time `dynamo:"created_at"`
	UpdatedAt   time.Time `dynamo:"updated_at"`
}

func (u userItem) domain() *runner.User {
	return &runner.User{
		Sub:         u.Sub,
		Username:    u.Username,
		RunnerCount: u.RunnerCount,
		CreatedAt:   u.CreatedAt,
		UpdatedAt:   u.UpdatedAt,
	}
}

// UpsertUser creates the user on first login, or updates the username, and
// returns the stored user.
func (s *Store) UpsertUser(ctx context.Context, sub, username string) (*runner.User, error) {
	if sub == "" {
		return nil, runner.Errorf(runner.EINVALID, "A user needs a subject.")
	}
	now := s.now().UTC()
	var item userItem
	err := s.users.Update("sub", sub).
		Set("username", username).
		Set("updated_at", now).
		SetIfNotExists("created_at", now).
		SetIfNotExists("runner_count", 0).
		Value(ctx, &item)
	if err != nil {
		return nil, fmt.Errorf("store: upsert user: %w", err)
	}
	return item.domain(), nil
}

// GetUser returns the user, or ENOTFOUND.
func (s *Store) GetUser(ctx context.Context, sub string) (*runner.User, error) {
	var item userItem
	err := s.users.Get("sub", sub).Consistent(true).One(ctx, &item)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, fmt.Errorf("store: get user: %w", notFound("User"))
	}
	if err != nil {
		return nil, fmt.Errorf("store: get user: %w", err)
	}
	return item.domain(), nil
}
