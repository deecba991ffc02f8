package sender

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/pipeline"
	"github.com/kvscamd/kvscamd/daemon/ring"
)

// PipelineUploader is a pipeline.UploaderFactory: it builds the sender of
// one [[stream]] over its ring, with a credentials provider made from the
// [credentials] table. `kvscamd run` plugs it into the pipeline.
func PipelineUploader(c *config.Config, st *config.Stream, r *ring.Ring, log *slog.Logger) (pipeline.Uploader, error) {
	cfg := ConfigFrom(c, st)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// One provider per stream: a camera normally has one stream, and a
	// provider of its own keeps the streams' refresh loops independent.
	creds, err := credentials.New(context.Background(), c.CredentialsConfig(), credentials.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("sender: stream %s: %w", cfg.Stream, err)
	}
	cfg.Ring, cfg.Credentials, cfg.Logger = r, creds, log
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Uploader{Sender: s, creds: creds}, nil
}

// Uploader runs a Sender together with the background refresh of its
// credentials.
type Uploader struct {
	*Sender
	creds *credentials.Provider
}

// Run uploads until ctx ends (returning nil).
func (u *Uploader) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := u.creds.Run(ctx); err != nil {
			u.log.Error("credentials refresh stopped", "err", err)
		}
	}()
	err := u.Sender.Run(ctx)
	cancel()
	<-done
	return err
}
