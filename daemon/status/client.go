package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
)

// Client talks to a running daemon's socket.
type Client struct {
	Path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{Path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Status asks for the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Do sends a command.
func (c *Client) Do(ctx context.Context, cmd Command) (Result, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = c.call(ctx, http.MethodPost, "/v1/command", body, &res)
	return res, err
}

func (c *Client) call(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://kvscamd"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.explain(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("status socket %s: read answer: %w", c.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return &e
		}
		return fmt.Errorf("status socket %s: %s", c.Path, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("status socket %s: bad answer: %w", c.Path, err)
	}
	return nil
}

// explain turns a failed connection into what the operator should do.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("kvscamd is not running (no daemon at %s); start it with systemctl start kvscamd", c.Path)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("cannot open %s: permission denied; run as root or join the %s group (usermod -aG %s $USER, then log in again)", c.Path, SocketGroup, SocketGroup)
	}
	return fmt.Errorf("status socket %s: %w", c.Path, err)
}
