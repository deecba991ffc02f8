package kvslocal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// apiError is an error answer in the service's REST-JSON shape: the
// exception name travels in the x-amzn-ErrorType header (with the
// ":<namespace>" suffix the service adds, which clients must strip) and the
// body is {"message": "..."}. The SDK reads the type from the header first,
// so the body carries no __type.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

// errorTypeNamespace is appended to x-amzn-ErrorType the way the service
// does; clients are expected to cut everything from the first colon.
const errorTypeNamespace = ":http://internal.amazon.com/coral/com.amazonaws.kinesisvideo.v20170930/"

// Exception names used on the wire.
const (
	excResourceNotFound      = "ResourceNotFoundException"
	excResourceInUse         = "ResourceInUseException"
	excInvalidArgument       = "InvalidArgumentException"
	excNotAuthorized         = "NotAuthorizedException"
	excClientLimitExceeded   = "ClientLimitExceededException"
	excConnectionLimit       = "ConnectionLimitExceededException"
	excUnrecognizedClient    = "UnrecognizedClientException"
	excInvalidSignature      = "InvalidSignatureException"
	excIncompleteSignature   = "IncompleteSignatureException"
	excMissingAuthentication = "MissingAuthenticationTokenException"
	excExpiredToken          = "ExpiredTokenException"
	excServiceUnavailable    = "ServiceUnavailableException"
	excUnknownOperation      = "UnknownOperationException"
	excSerialization         = "SerializationException"
	excVersionMismatch       = "VersionMismatchException"
	excInvalidEndpoint       = "InvalidEndpointException"
)

// Messages the service is known to send (seen in producer logs); tests and
// clients match on them, so they are constants.
const (
	MsgTokenExpired     = "The security token included in the request is expired"
	MsgTokenInvalid     = "The security token included in the request is invalid."
	MsgSignatureInvalid = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	MsgMissingAuth      = "Missing Authentication Token"
)

func errNotFound(msg string) *apiError {
	return &apiError{http.StatusNotFound, excResourceNotFound, msg}
}

func errInvalidArg(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, excInvalidArgument, fmt.Sprintf(format, a...)}
}

func errClientLimit(msg string) *apiError {
	return &apiError{http.StatusBadRequest, excClientLimitExceeded, msg}
}

// setDate sets the Date header from the server's clock (Go would use the
// host clock): producers learn their clock offset from it when the
// service answers "Signature expired".
func setDate(h http.Header, now time.Time) {
	h.Set("Date", now.UTC().Format(http.TimeFormat))
}

func writeAPIError(w http.ResponseWriter, reqID string, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-ErrorType", e.Type+errorTypeNamespace)
	h.Set("x-amzn-RequestId", reqID)
	w.WriteHeader(e.Status)
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.Message})
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, reqID string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeAPIError(w, reqID, &apiError{http.StatusInternalServerError, "InternalFailure", err.Error()})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-RequestId", reqID)
	_, _ = w.Write(b)
}
