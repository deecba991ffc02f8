package ack

import "strings"

// streamCase is one acknowledgement stream and what decoding it must give.
// The same table drives the unit tests, the benchmark and the fuzz seeds.
type streamCase struct {
	name    string
	in      string
	want    []Event
	wantErr string // substring of the error that ends the stream; "" = clean io.EOF
}

const fragNo = "91343852333181704754345985890710005834298701132"

var streamCases = []streamCase{
	{
		name: "real service lines",
		in: `{"EventType":"BUFFERING","FragmentTimecode":1615717079876,"FragmentNumber":"` + fragNo + `"}
{"EventType":"RECEIVED","FragmentTimecode":1615717079876,"FragmentNumber":"` + fragNo + `"}
{"EventType":"PERSISTED","FragmentTimecode":1615717079876,"FragmentNumber":"` + fragNo + `"}
`,
		want: []Event{
			{Type: Buffering, Timecode: 1615717079876, HasTimecode: true, FragmentNumber: fragNo},
			{Type: Received, Timecode: 1615717079876, HasTimecode: true, FragmentNumber: fragNo},
			{Type: Persisted, Timecode: 1615717079876, HasTimecode: true, FragmentNumber: fragNo},
		},
	},
	{
		name: "bunched without separators",
		in:   `{"EventType":"RECEIVED","FragmentTimecode":1,"FragmentNumber":"1"}{"EventType":"PERSISTED","FragmentTimecode":1,"FragmentNumber":"1"}`,
		want: []Event{
			{Type: Received, Timecode: 1, HasTimecode: true, FragmentNumber: "1"},
			{Type: Persisted, Timecode: 1, HasTimecode: true, FragmentNumber: "1"},
		},
	},
	{
		name: "whitespace and CRLF between objects",
		in:   "\r\n  {\"EventType\" : \"IDLE\"}\r\n\r\n\t{\"EventType\":\"IDLE\",\"FragmentTimecode\":5}   \n",
		want: []Event{{Type: Idle}, {Type: Idle, Timecode: 5, HasTimecode: true}},
	},
	{
		name: "error with code and id",
		in:   `{"EventType":"ERROR","FragmentTimecode":1597065596575,"FragmentNumber":"` + fragNo + `","ErrorCode":"MAX_FRAGMENT_DURATION_REACHED","ErrorId":4002}`,
		want: []Event{{Type: Error, Timecode: 1597065596575, HasTimecode: true, FragmentNumber: fragNo, ErrorCode: "MAX_FRAGMENT_DURATION_REACHED", ErrorID: 4002}},
	},
	{
		name: "error for unparseable data has timecode -1 and empty number",
		in:   `{"EventType":"ERROR","FragmentTimecode":-1,"FragmentNumber":"","ErrorId":4006,"ErrorCode":"INVALID_MKV_DATA"}`,
		want: []Event{{Type: Error, Timecode: -1, HasTimecode: true, ErrorCode: "INVALID_MKV_DATA", ErrorID: 4006}},
	},
	{
		name: "error id as a string",
		in:   `{"EventType":"ERROR","FragmentTimecode":9,"ErrorId":"5001","ErrorCode":"ARCHIVAL_ERROR"}`,
		want: []Event{{Type: Error, Timecode: 9, HasTimecode: true, ErrorCode: "ARCHIVAL_ERROR", ErrorID: 5001}},
	},
	{
		name: "fragment number as bare integer and unknown keys ignored",
		in:   `{"EventType":"RECEIVED","FragmentTimecode":7,"FragmentNumber":12345,"Extra":{"a":[1,2]}}`,
		want: []Event{{Type: Received, Timecode: 7, HasTimecode: true, FragmentNumber: "12345"}},
	},
	{
		name: "unknown event type is passed on",
		in:   `{"EventType":"SOMETHING_NEW","FragmentTimecode":7}`,
		want: []Event{{Type: "SOMETHING_NEW", Timecode: 7, HasTimecode: true}},
	},
	{
		name:    "expired token message",
		in:      `{"message":"The security token included in the request is expired"}`,
		wantErr: "security token included in the request is expired",
	},
	{
		name:    "garbage after a good event",
		in:      `{"EventType":"RECEIVED","FragmentTimecode":1,"FragmentNumber":"1"} <html>`,
		want:    []Event{{Type: Received, Timecode: 1, HasTimecode: true, FragmentNumber: "1"}},
		wantErr: "malformed",
	},
	{
		name:    "truncated object",
		in:      `{"EventType":"RECEIVED","FragmentTi`,
		wantErr: "ended inside an object",
	},
	{
		name:    "array instead of object",
		in:      `[1,2]`,
		wantErr: "malformed",
	},
	{
		name:    "missing EventType",
		in:      `{"FragmentTimecode":1}`,
		wantErr: "without EventType",
	},
	{
		name:    "timecode is a string",
		in:      `{"EventType":"RECEIVED","FragmentTimecode":"1"}`,
		wantErr: "malformed",
	},
	{
		name:    "fragment number with letters",
		in:      `{"EventType":"RECEIVED","FragmentTimecode":1,"FragmentNumber":"12a"}`,
		wantErr: "not a string of digits",
	},
	{
		name:    "error id a string of letters",
		in:      `{"EventType":"ERROR","FragmentTimecode":1,"ErrorId":"x1"}`,
		wantErr: "ErrorId \"x1\" is not a number",
	},
	{
		name:    "error id an object",
		in:      `{"EventType":"ERROR","FragmentTimecode":1,"ErrorId":{}}`,
		wantErr: "neither a number nor a string",
	},
	{
		name:    "error without id",
		in:      `{"EventType":"ERROR","FragmentTimecode":1}`,
		wantErr: "without ErrorId",
	},
	{
		name:    "oversized object",
		in:      `{"EventType":"RECEIVED","Pad":"` + strings.Repeat("x", MaxEventSize) + `"}`,
		wantErr: "larger than",
	},
	{
		name:    "endless whitespace",
		in:      strings.Repeat(" ", MaxEventSize+10),
		wantErr: "larger than",
	},
	{
		name: "empty body",
		in:   "",
	},
}
