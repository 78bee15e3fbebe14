package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/retry"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
)

// resealIfOld seals the runner's token again with the current key when it
// was sealed with an older one, so that after a sealing-key rotation every
// runner's token moves to the new key at its next poll and the old key can
// be retired, however long GitLab lets the token live. The write is
// conditional on the sealed token this poll read and changes nothing else;
// when it fails the poll goes on, and the next poll tries again.
func (p *Poller) resealIfOld(ctx context.Context, log *slog.Logger, r *runner.Runner, token string) {
	if !p.d.Sealer.NeedsReseal(r.SealedToken) {
		return
	}
	sealed, err := p.d.Sealer.Seal(seal.RunnerToken(r.ID), token)
	if err != nil {
		log.WarnContext(ctx, "cannot reseal the runner token with the current key", "error", err)
		return
	}
	if err := p.d.Runners.RotateToken(ctx, r.ID, r.SealedToken, sealed, r.TokenObtainedAt, r.TokenExpiresAt); err != nil {
		log.WarnContext(ctx, "the runner token stays sealed with an older key until a later poll", "error", err)
		return
	}
	r.SealedToken = sealed
	log.InfoContext(ctx, "runner token resealed with the current key")
}

// rotateIfDue resets the runner's token from three quarters of its life
// on, and saves the new one sealed with its expiry. It returns the token to
// use, or why the poll stops.
//
// GitLab invalidates the old token the moment it hands out the new one,
// which then exists only in this process until it is saved: a lost save
// loses the runner. So the reset happens only after the store accepted a
// write of this runner's token (the same values, conditional on the token
// this poll read): while the store refuses writes the rotation waits for a
// later poll, and the old token keeps working meanwhile. A save that fails
// after the reset is tried again with backoff for about ten seconds.
//
// Two polls may find the token due at once. GitLab serialises them: the
// first reset invalidates the old token, so the second reset is refused
// with 403. The loser then reads the runner again and goes on with the
// token the winner saved; only if none was saved is the token bad. The save
// itself is conditional on the sealed token this poll read, so a poll can
// never overwrite a token another writer saved in between.
func (p *Poller) rotateIfDue(ctx context.Context, log *slog.Logger, client *gitlab.Client, r *runner.Runner, token string) (string, string) {
	now := p.cfg.Now()
	obtained := r.CreatedAt
	if r.TokenObtainedAt != nil {
		obtained = *r.TokenObtainedAt
	}
	if r.TokenExpiresAt == nil || !gitlab.TokenExpiringSoon(obtained, r.TokenExpiresAt, now) {
		return token, ""
	}
	if err := p.d.Runners.RotateToken(ctx, r.ID, r.SealedToken, r.SealedToken, r.TokenObtainedAt, r.TokenExpiresAt); err != nil {
		if runner.ErrorCode(err) == runner.ECONFLICT {
			if t, ok := p.awaitRotation(ctx, r); ok {
				log.InfoContext(ctx, "token was rotated by a concurrent poll")
				return t, ""
			}
		}
		log.WarnContext(ctx, "token rotation postponed: the runner cannot be written now", "error", err)
		return token, ""
	}
	creds, err := client.ResetRunnerToken(ctx, token)
	if errors.Is(err, gitlab.ErrForbidden) {
		if t, ok := p.awaitRotation(ctx, r); ok {
			log.InfoContext(ctx, "token was rotated by a concurrent poll")
			return t, ""
		}
		log.WarnContext(ctx, "token reset refused", "error", err)
		p.recordError(ctx, r, MsgTokenRejected)
		return "", StopForbidden
	}
	if err != nil {
		// The old token still works until it expires: poll with it and try
		// again next time.
		log.WarnContext(ctx, "token reset failed; will retry", "error", err)
		return token, ""
	}
	sealed, err := p.d.Sealer.Seal(seal.RunnerToken(r.ID), creds.Token)
	if err == nil {
		err = p.saveRotatedToken(ctx, log, r, sealed, now, creds.TokenExpiresAt)
	}
	if runner.ErrorCode(err) == runner.ECONFLICT {
		var (
			stored string
			won    bool
		)
		stored, won, err = p.resolveConflict(ctx, r, token, sealed, now, creds.TokenExpiresAt)
		if err == nil && !won {
			log.WarnContext(ctx, "a concurrent poll saved a rotated token first; polling with that one")
			return stored, ""
		}
	}
	if err != nil {
		// GitLab already invalidated the old token; the new one exists only
		// here. Poll with it now; the owner must re-register if it is lost.
		log.ErrorContext(ctx, "new runner token not saved", "error", err)
		p.recordError(ctx, r, "The runner token was rotated but could not be saved; register the runner again if polling stops")
		return creds.Token, ""
	}
	r.SealedToken, r.TokenObtainedAt, r.TokenExpiresAt = sealed, &now, creds.TokenExpiresAt
	log.InfoContext(ctx, "runner token rotated", "expires_at", creds.TokenExpiresAt)
	return creds.Token, ""
}

// Retries of a rotated token's save: 8 attempts, waits doubling from
// 100 ms to at most 4 s (about 10 s in all), never past the invocation's
// deadline.
const (
	tokenSaveAttempts  = 8
	tokenSaveFirstWait = 100 * time.Millisecond
	tokenSaveMaxWait   = 4 * time.Second
)

// saveRotatedToken saves the sealed new token over the one r holds,
// trying again after a failure other than a conflict (which
// resolveConflict settles). The poll's cancellation does not stop it.
func (p *Poller) saveRotatedToken(ctx context.Context, log *slog.Logger, r *runner.Runner, sealed []byte, now time.Time, expiresAt *time.Time) error {
	save := context.WithoutCancel(ctx)
	deadline, hasDeadline := ctx.Deadline()
	wait := tokenSaveFirstWait
	sleep := p.cfg.GitLab.Sleep // the GitLab clients' waits, which tests replace
	if sleep == nil {
		sleep = retry.Sleep
	}
	for attempt := 1; ; attempt++ {
		err := p.d.Runners.RotateToken(save, r.ID, r.SealedToken, sealed, &now, expiresAt)
		if err == nil || runner.ErrorCode(err) == runner.ECONFLICT || attempt == tokenSaveAttempts ||
			(hasDeadline && time.Until(deadline) < wait+time.Second) {
			return err
		}
		log.WarnContext(ctx, "new runner token not saved; trying again", "attempt", attempt, "error", err)
		_ = sleep(save, wait)
		wait = min(2*wait, tokenSaveMaxWait)
	}
}

// resolveConflict handles a save refused because the stored token changed
// since r was read. It reads the runner again: if the stored token is still
// the one this poll reset, only resealed (a sealing key rotation), the new
// token is saved over it and won is true; if another poll saved a rotated
// token first, r becomes the fresh runner and its token is returned, so
// this poll and every later one use the same token. An error means the new
// token is not saved.
func (p *Poller) resolveConflict(ctx context.Context, r *runner.Runner, old string, sealed []byte, now time.Time, expiresAt *time.Time) (stored string, won bool, err error) {
	fresh, err := p.d.Runners.GetRunner(context.WithoutCancel(ctx), r.ID)
	if err != nil {
		return "", false, fmt.Errorf("poller: read runner after a token conflict: %w", err)
	}
	stored, err = p.d.Sealer.Open(seal.RunnerToken(r.ID), fresh.SealedToken)
	if err != nil {
		return "", false, fmt.Errorf("poller: open the token saved by another writer: %w", err)
	}
	if stored != old {
		*r = *fresh
		return stored, false, nil
	}
	if err := p.d.Runners.RotateToken(context.WithoutCancel(ctx), r.ID, fresh.SealedToken, sealed, &now, expiresAt); err != nil {
		return "", false, fmt.Errorf("poller: save rotated token over a resealed one: %w", err)
	}
	return "", true, nil
}

// awaitRotation waits briefly for a concurrent poll that won the reset to
// save the new token: its reset answered before ours was refused, but its
// save may still be on the way. It updates r and returns the new token.
func (p *Poller) awaitRotation(ctx context.Context, r *runner.Runner) (string, bool) {
	delay := 50 * time.Millisecond
	for range 6 { // about 3 s in all
		fresh, err := p.d.Runners.GetRunner(ctx, r.ID)
		if err == nil && !bytes.Equal(fresh.SealedToken, r.SealedToken) {
			if t, err := p.d.Sealer.Open(seal.RunnerToken(r.ID), fresh.SealedToken); err == nil {
				*r = *fresh
				return t, true
			}
		}
		if retry.Sleep(ctx, delay) != nil {
			return "", false
		}
		delay *= 2
	}
	return "", false
}
