package mqtt

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
)

// Command execution limits.
const (
	// maxRemembered is how many answered execution ids are kept, so that
	// a redelivered request gets its first answer again.
	maxRemembered = 256
	// commandTimeout bounds one command in the daemon.
	commandTimeout = 2 * time.Minute
	// maxReasonDescription is AWS's limit on statusReason.reasonDescription.
	maxReasonDescription = 1024
)

// Execution statuses of AWS IoT commands and jobs.
const (
	StatusInProgress = "IN_PROGRESS"
	StatusSucceeded  = "SUCCEEDED"
	StatusFailed     = "FAILED"
	StatusRejected   = "REJECTED"
)

// CommandResponse is the body published on …/response/json.
type CommandResponse struct {
	Status       string                  `json:"status"`
	StatusReason *StatusReason           `json:"statusReason,omitempty"`
	Result       map[string]ResultString `json:"result,omitempty"`
}

// StatusReason says why a command did not succeed.
type StatusReason struct {
	ReasonCode        string `json:"reasonCode"`
	ReasonDescription string `json:"reasonDescription"`
}

// ResultString is a string result value ({"s": …}).
type ResultString struct {
	S string `json:"s"`
}

// commands answers AWS IoT command executions, one at a time.
type commands struct {
	r        *Runner
	q        queue
	answered map[string]CommandResponse
	order    []string // answered ids, oldest first
}

func newCommands(r *Runner) *commands {
	return &commands{r: r, q: newQueue("commands", r.log), answered: map[string]CommandResponse{}}
}

func (c *commands) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.q.c:
			c.handle(ctx, m)
		}
	}
}

func (c *commands) handle(ctx context.Context, m Message) {
	id := executionID(m.Topic)
	if !idRE.MatchString(id) {
		c.r.log.Warn("mqtt command with an unusable execution id ignored", "topic", m.Topic)
		return
	}
	log := c.r.log.With("execution", id)
	resp, seen := c.answered[id]
	if seen {
		log.Info("mqtt command redelivered; sending its first answer again")
	} else {
		resp = c.execute(ctx, m.Payload)
		c.remember(id, resp)
		log.Info("mqtt command answered", "status", resp.Status, "reason", resp.StatusReason)
	}
	if err := c.r.publish(ctx, c.r.topics.CommandResponse(id), resp, false); err != nil {
		log.Warn("mqtt command answer not sent", "err", err)
	}
}

func (c *commands) remember(id string, resp CommandResponse) {
	c.answered[id] = resp
	c.order = append(c.order, id)
	if len(c.order) > maxRemembered {
		delete(c.answered, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *commands) execute(ctx context.Context, payload []byte) CommandResponse {
	cmd, e := DecodeCommand(payload)
	if e != nil {
		return failure(e)
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	res, err := c.r.o.Daemon.Do(cctx, cmd)
	if err != nil {
		return failure(err)
	}
	out := CommandResponse{Status: StatusSucceeded, Result: map[string]ResultString{"message": {res.Message}}}
	switch cmd.Op {
	case status.OpStatus:
		b, _ := json.Marshal(res.Status)
		out.Result["status"] = ResultString{string(b)}
	case status.OpUpload:
		out.Result["fragments"] = ResultString{strconv.Itoa(res.Fragments)}
		out.Result["bytes"] = ResultString{strconv.FormatInt(res.Bytes, 10)}
	case status.OpSet:
		b, _ := json.Marshal(res.Changes)
		out.Result["changes"] = ResultString{string(b)}
	}
	return out
}

// failure turns a refused or failed command into its answer: the
// daemon's own reason code, REJECTED when the request was at fault and
// FAILED when the daemon was.
func failure(err error) CommandResponse {
	code := status.CodeOf(err)
	st := StatusRejected
	if code == status.CodeInternal || code == status.CodeUnavailable {
		st = StatusFailed
	}
	return CommandResponse{Status: st, StatusReason: &StatusReason{ReasonCode: code, ReasonDescription: truncate(err.Error(), maxReasonDescription)}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
