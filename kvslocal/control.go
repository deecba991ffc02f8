package kvslocal

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/internal/kvs"
)

// streamARNRE is the ARN pattern from the API reference. Stream names are
// checked with kvs.CheckStreamName, kvscamd's own rule, which refuses what
// the service refuses and also "." and "..": a name the daemon cannot use
// must not pass here either.
var streamARNRE = regexp.MustCompile(`^arn:[a-z\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+$`)

// APINames GetDataEndpoint accepts.
var validAPINames = map[string]bool{
	"PUT_MEDIA": true, "GET_MEDIA": true, "LIST_FRAGMENTS": true, "GET_MEDIA_FOR_FRAGMENT_LIST": true,
	"GET_HLS_STREAMING_SESSION_URL": true, "GET_DASH_STREAMING_SESSION_URL": true, "GET_CLIP": true,
	"GET_IMAGES": true,
}

type controlOp func(s *Server, body []byte) (any, *apiError)

var controlOps = map[string]controlOp{
	"/describeStream":      (*Server).opDescribeStream,
	"/createStream":        (*Server).opCreateStream,
	"/getDataEndpoint":     (*Server).opGetDataEndpoint,
	"/listStreams":         (*Server).opListStreams,
	"/deleteStream":        (*Server).opDeleteStream,
	"/tagStream":           (*Server).opTagStream,
	"/updateDataRetention": (*Server).opUpdateDataRetention,
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// StreamInfo is the DescribeStream shape.
type StreamInfo struct {
	CreationTime         float64 `json:"CreationTime"`
	DataRetentionInHours int     `json:"DataRetentionInHours"`
	DeviceName           string  `json:"DeviceName,omitempty"`
	KmsKeyId             string  `json:"KmsKeyId"`
	MediaType            string  `json:"MediaType,omitempty"`
	Status               string  `json:"Status"`
	StreamARN            string  `json:"StreamARN"`
	StreamName           string  `json:"StreamName"`
	Version              string  `json:"Version"`
}

func decodeStrict(body []byte, v any) *apiError {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, excSerialization, fmt.Sprintf("request body is not the expected JSON: %v", err)}
	}
	return nil
}

type streamRef struct {
	StreamName string `json:"StreamName"`
	StreamARN  string `json:"StreamARN"`
}

// lookup finds the stream a request names and applies its per-stream
// control-plane rate and throttling faults.
func (s *Server) lookup(ref streamRef, autoCreate bool) (*stream, *apiError) {
	if (ref.StreamName == "") == (ref.StreamARN == "") {
		return nil, errInvalidArg("exactly one of StreamName and StreamARN must be given")
	}
	if ref.StreamName != "" {
		if err := kvs.CheckStreamName(ref.StreamName); err != nil {
			return nil, errInvalidArg("StreamName: %v", err)
		}
	}
	if ref.StreamARN != "" && !streamARNRE.MatchString(ref.StreamARN) {
		return nil, errInvalidArg("StreamARN %q is not a Kinesis Video stream ARN", ref.StreamARN)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *stream
	if ref.StreamName != "" {
		st = s.streams[ref.StreamName]
		if st == nil && autoCreate && s.opts.AutoCreateStreams {
			st = s.newStreamLocked(ref.StreamName, 24, "", "")
		}
	} else {
		for _, c := range s.streams {
			if c.info.StreamARN == ref.StreamARN {
				st = c
			}
		}
	}
	if st == nil || st.info.Status != "ACTIVE" {
		return nil, errNotFound("The requested stream is not found or not active.")
	}
	return st, nil
}

func (s *Server) controlLimited(st *stream) *apiError {
	if st.faults.takeThrottle() {
		return errClientLimit("The request was throttled (injected).")
	}
	if !st.controlRate.allow(s.now(), s.opts.ControlCallsPerSecond) {
		return errClientLimit("You have exceeded the limit of allowed client calls for this stream.")
	}
	return nil
}

func (s *Server) opDescribeStream(body []byte) (any, *apiError) {
	var ref streamRef
	if e := decodeStrict(body, &ref); e != nil {
		return nil, e
	}
	st, e := s.lookup(ref, false)
	if e != nil {
		return nil, e
	}
	if e := s.controlLimited(st); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"StreamInfo": st.info}, nil
}

func (s *Server) opCreateStream(body []byte) (any, *apiError) {
	var req struct {
		DeviceName           string
		StreamName           string
		MediaType            string
		KmsKeyId             string
		DataRetentionInHours *int
		Tags                 map[string]string
	}
	if e := decodeStrict(body, &req); e != nil {
		return nil, e
	}
	if err := kvs.CheckStreamName(req.StreamName); err != nil {
		return nil, errInvalidArg("StreamName: %v", err)
	}
	ret := 0
	if req.DataRetentionInHours != nil {
		ret = *req.DataRetentionInHours
	}
	if ret < 0 || ret > 87600 {
		return nil, errInvalidArg("DataRetentionInHours %d must be between 0 and 87600", ret)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[req.StreamName]; ok {
		return nil, &apiError{http.StatusBadRequest, excResourceInUse, fmt.Sprintf("The stream %s already exists.", req.StreamName)}
	}
	st := s.newStreamLocked(req.StreamName, ret, req.DeviceName, req.MediaType)
	if req.KmsKeyId != "" {
		st.info.KmsKeyId = req.KmsKeyId
	}
	return map[string]string{"StreamARN": st.info.StreamARN}, nil
}

func (s *Server) opGetDataEndpoint(body []byte) (any, *apiError) {
	var req struct {
		streamRef
		APIName string
	}
	if e := decodeStrict(body, &req); e != nil {
		return nil, e
	}
	if !validAPINames[req.APIName] {
		return nil, errInvalidArg("APIName %q is not valid; use PUT_MEDIA to upload", req.APIName)
	}
	st, e := s.lookup(req.streamRef, true)
	if e != nil {
		return nil, e
	}
	if e := s.controlLimited(st); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]string{"DataEndpoint": s.DataURL}, nil
}

func (s *Server) opListStreams(body []byte) (any, *apiError) {
	var req struct {
		MaxResults          int
		NextToken           string
		StreamNameCondition *struct{ ComparisonOperator, ComparisonValue string }
	}
	if e := decodeStrict(body, &req); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := []StreamInfo{}
	for _, st := range s.streams {
		if c := req.StreamNameCondition; c != nil && !strings.HasPrefix(st.info.StreamName, c.ComparisonValue) {
			continue
		}
		list = append(list, st.info)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].StreamName < list[j].StreamName })
	return map[string]any{"StreamInfoList": list}, nil
}

func (s *Server) opDeleteStream(body []byte) (any, *apiError) {
	var req struct {
		StreamARN      string
		CurrentVersion string
	}
	if e := decodeStrict(body, &req); e != nil {
		return nil, e
	}
	if req.StreamARN == "" {
		return nil, errInvalidArg("StreamARN is required")
	}
	st, e := s.lookup(streamRef{StreamARN: req.StreamARN}, false)
	if e != nil {
		return nil, e
	}
	if req.CurrentVersion != "" && req.CurrentVersion != st.info.Version {
		return nil, &apiError{http.StatusBadRequest, excVersionMismatch, "The stream version does not match."}
	}
	s.deleteStream(st)
	return struct{}{}, nil
}

func (s *Server) opTagStream(body []byte) (any, *apiError) {
	var req struct {
		streamRef
		Tags map[string]string
	}
	if e := decodeStrict(body, &req); e != nil {
		return nil, e
	}
	st, e := s.lookup(req.streamRef, false)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range req.Tags {
		st.tags[k] = v
	}
	return struct{}{}, nil
}

func (s *Server) opUpdateDataRetention(body []byte) (any, *apiError) {
	var req struct {
		streamRef
		CurrentVersion             string
		Operation                  string
		DataRetentionChangeInHours int
	}
	if e := decodeStrict(body, &req); e != nil {
		return nil, e
	}
	st, e := s.lookup(req.streamRef, false)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Operation {
	case "INCREASE_DATA_RETENTION":
		st.info.DataRetentionInHours += req.DataRetentionChangeInHours
	case "DECREASE_DATA_RETENTION":
		if req.DataRetentionChangeInHours > st.info.DataRetentionInHours {
			return nil, errInvalidArg("retention cannot go below 0")
		}
		st.info.DataRetentionInHours -= req.DataRetentionChangeInHours
	default:
		return nil, errInvalidArg("Operation %q must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION", req.Operation)
	}
	return struct{}{}, nil
}

// newStreamLocked registers an ACTIVE stream. s.mu must be held.
func (s *Server) newStreamLocked(name string, retentionHours int, device, media string) *stream {
	now := s.now()
	region := s.opts.Region
	if region == "" {
		region = DefaultRegion
	}
	st := &stream{
		server: s,
		name:   name,
		tags:   map[string]string{},
		info: StreamInfo{
			CreationTime:         float64(now.UnixMilli()) / 1000,
			DataRetentionInHours: retentionHours,
			DeviceName:           device,
			KmsKeyId:             "arn:aws:kms:" + region + ":" + accountID + ":alias/aws/kinesisvideo",
			MediaType:            media,
			Status:               "ACTIVE",
			StreamARN:            fmt.Sprintf("arn:aws:kinesisvideo:%s:%s:stream/%s/%d", region, accountID, name, now.UnixMilli()),
			StreamName:           name,
			Version:              randomString("", 20, "abcdefghijklmnopqrstuvwxyz0123456789"),
		},
		changed: make(chan struct{}),
	}
	s.streams[name] = st
	return st
}

// CreateStream makes an ACTIVE stream with the given retention (0 means
// no retention: PERSISTED is never sent). It fails if the name is taken.
func (s *Server) CreateStream(name string, retention time.Duration) (StreamInfo, error) {
	if err := kvs.CheckStreamName(name); err != nil {
		return StreamInfo{}, fmt.Errorf("kvslocal: create stream: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[name]; ok {
		return StreamInfo{}, fmt.Errorf("kvslocal: create stream %q: already exists", name)
	}
	hours := int((retention + time.Hour - 1) / time.Hour)
	return s.newStreamLocked(name, hours, "kvslocal", "video/h264").info, nil
}

// DeleteStream removes a stream; an open PutMedia connection on it gets
// ERROR 4008 (STREAM_NOT_ACTIVE) and is closed. What it received stays
// available through Fragments.
func (s *Server) DeleteStream(name string) error {
	s.mu.Lock()
	st := s.streams[name]
	s.mu.Unlock()
	if st == nil {
		return fmt.Errorf("kvslocal: delete stream %q: no such stream", name)
	}
	s.deleteStream(st)
	return nil
}

func (s *Server) deleteStream(st *stream) {
	s.mu.Lock()
	if s.streams[st.name] == st {
		delete(s.streams, st.name)
		s.deleted = append(s.deleted, st)
	}
	st.info.Status = "DELETING"
	s.mu.Unlock()
	st.notifyDeleted()
}

// Stream returns the description of a stream.
func (s *Server) Stream(name string) (StreamInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[name]
	if st == nil {
		return StreamInfo{}, false
	}
	return st.info, true
}
