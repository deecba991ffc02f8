package mqtt

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/kvscamd/kvscamd/daemon/status"
)

// maxStatusDetail is AWS's limit on a statusDetails value.
const maxStatusDetail = 1024

// JobExecution is the part of a job execution the daemon reads.
type JobExecution struct {
	JobID           string          `json:"jobId"`
	Status          string          `json:"status"`
	ExecutionNumber int64           `json:"executionNumber"`
	VersionNumber   int64           `json:"versionNumber"`
	JobDocument     json.RawMessage `json:"jobDocument"`
}

// JobUpdate is the body published on …/jobs/<id>/update.
type JobUpdate struct {
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	ExecutionNumber int64             `json:"executionNumber,omitempty"`
	ClientToken     string            `json:"clientToken,omitempty"`
}

// jobs runs AWS IoT jobs one at a time on its worker goroutine, which
// owns all its state.
type jobs struct {
	r     *Runner
	q     queue
	done  map[string]bool // jobId#executionNumber finished or refused
	order []string
	token int
}

func newJobs(r *Runner) *jobs {
	return &jobs{r: r, q: newQueue("jobs", r.log), done: map[string]bool{}}
}

func (j *jobs) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-j.q.c:
			j.handle(ctx, m)
		}
	}
}

func (j *jobs) clientToken() string {
	j.token++
	return "kvscamd-job-" + strconv.Itoa(j.token)
}

func (j *jobs) startNext(ctx context.Context) {
	if err := j.r.publish(ctx, j.r.topics.Jobs("start-next"), map[string]string{"clientToken": j.clientToken()}, false); err != nil {
		j.r.log.Warn("mqtt jobs start-next not sent", "err", err)
	}
}

func key(e *JobExecution) string { return e.JobID + "#" + strconv.FormatInt(e.ExecutionNumber, 10) }

func (j *jobs) handle(ctx context.Context, m Message) {
	t := j.r.topics
	var body struct {
		Execution *JobExecution `json:"execution"`
		Code      string        `json:"code"`
		Message   string        `json:"message"`
	}
	if m.Topic != "" {
		if err := json.Unmarshal(m.Payload, &body); err != nil {
			j.r.log.Warn("mqtt jobs message unreadable", "topic", m.Topic, "err", err)
			return
		}
	}
	switch {
	case m.Topic == "":
		j.startNext(ctx) // pick up what was queued while offline
	case m.Topic == t.Jobs("notify-next"):
		if body.Execution == nil || j.done[key(body.Execution)] {
			return // nothing pending, or a duplicate
		}
		j.startNext(ctx)
	case m.Topic == t.Jobs("start-next/accepted"):
		e := body.Execution
		if e == nil || j.done[key(e)] {
			return
		}
		j.execute(ctx, e)
		j.startNext(ctx)
	case m.Topic == t.Jobs("start-next/rejected"):
		j.r.log.Warn("mqtt jobs start-next refused", "code", body.Code, "message", body.Message)
	case TopicMatches(t.Job("+", "update/rejected"), m.Topic):
		j.r.log.Warn("mqtt job update refused", "topic", m.Topic, "code", body.Code, "message", body.Message)
	}
}

func (j *jobs) execute(ctx context.Context, e *JobExecution) {
	log := j.r.log.With("job", e.JobID, "execution", e.ExecutionNumber)
	if !idRE.MatchString(e.JobID) {
		log.Warn("mqtt job with an unusable id ignored")
		return
	}
	j.finish(e)
	update := func(st string, details map[string]string) {
		for k, v := range details {
			details[k] = truncate(v, maxStatusDetail)
		}
		u := JobUpdate{Status: st, StatusDetails: details, ExecutionNumber: e.ExecutionNumber, ClientToken: j.clientToken()}
		if err := j.r.publish(ctx, j.r.topics.Job(e.JobID, "update"), u, false); err != nil {
			log.Warn("mqtt job update not sent", "status", st, "err", err)
		}
	}
	cmd, bad := DecodeJob(e.JobDocument)
	if bad != nil {
		log.Warn("mqtt job refused", "reason", bad.Code, "err", bad.Message)
		update(StatusRejected, map[string]string{"reasonCode": bad.Code, "reason": bad.Message})
		return
	}
	update(StatusInProgress, map[string]string{"progress": "running " + cmd.Op})
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	res, err := j.r.o.Daemon.Do(cctx, cmd)
	if err != nil {
		log.Warn("mqtt job failed", "err", err)
		update(StatusFailed, map[string]string{"reasonCode": status.CodeOf(err), "reason": err.Error()})
		return
	}
	details := map[string]string{"message": res.Message}
	if cmd.Op == status.OpUpload {
		details["fragments"] = strconv.Itoa(res.Fragments)
		details["bytes"] = strconv.FormatInt(res.Bytes, 10)
	}
	log.Info("mqtt job done", "message", res.Message)
	update(StatusSucceeded, details)
}

// finish records e as handled before it runs, so that a duplicate
// notification arriving meanwhile is ignored.
func (j *jobs) finish(e *JobExecution) {
	k := key(e)
	j.done[k] = true
	j.order = append(j.order, k)
	if len(j.order) > maxRemembered {
		delete(j.done, j.order[0])
		j.order = j.order[1:]
	}
}
