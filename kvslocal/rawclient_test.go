package kvslocal_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// signLikeProducerC signs the way the official C producer does: every
// header but content-type and the security token is signed, including
// transfer-encoding and connection, and Host carries no port. The SDK's
// signer never signs transfer-encoding, hence this small test-only signer.
func signLikeProducerC(headers map[string]string, accessKey, secret, region string, now time.Time) string {
	amzDate := now.UTC().Format("20060102T150405Z")
	day := amzDate[:8]
	headers["x-amz-date"] = amzDate
	var names []string
	for k := range headers {
		if k != "content-type" && k != "x-amz-security-token" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var canon strings.Builder
	canon.WriteString("POST\n/putMedia\n\n")
	for _, k := range names {
		canon.WriteString(k + ":" + headers[k] + "\n")
	}
	signed := strings.Join(names, ";")
	canon.WriteString("\n" + signed + "\n" + kvslocal.EmptyPayloadHash)
	h := sha256.Sum256([]byte(canon.String()))
	scope := day + "/" + region + "/kinesisvideo/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
	mac := func(k []byte, s string) []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	k := mac(mac(mac(mac([]byte("AWS4"+secret), day), region), "kinesisvideo"), "aws4_request")
	return fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", accessKey, scope, signed, hex.EncodeToString(mac(k, toSign)))
}

// A PutMedia written byte by byte as the C producer sends it, with and
// without "Expect: 100-continue" (the embedded C producer sends it).
func TestProducerCStyleRequest(t *testing.T) {
	for _, expect := range []bool{false, true} {
		t.Run(fmt.Sprintf("expect=%v", expect), func(t *testing.T) {
			srv := kvslocal.Start(t, kvslocal.Options{Region: testRegion})
			newStream(t, srv, "cam", time.Hour)
			cred := srv.IssueCredentials(time.Hour)
			m := liveMovie(t)
			headers := map[string]string{
				"host":                            "127.0.0.1",
				"user-agent":                      "AWS-PRODUCER-SDK-KVS/3.4.1 GCC/12.2.0 Linux/6.1 x86_64",
				"x-amzn-stream-name":              "cam",
				"x-amzn-producer-start-timestamp": fmt.Sprintf("%d.%d", time.Now().Unix(), 5),
				"x-amzn-fragment-acknowledgment-required": "1",
				"x-amzn-fragment-timecode-type":           "ABSOLUTE",
				"transfer-encoding":                       "chunked",
				"connection":                              "keep-alive",
				"content-type":                            "application/json",
				"x-amz-security-token":                    cred.SessionToken,
			}
			if expect {
				headers["expect"] = "100-continue"
				headers["accept"] = "*/*"
			}
			auth := signLikeProducerC(headers, cred.AccessKeyID, cred.SecretAccessKey, testRegion, time.Now())
			conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var req strings.Builder
			req.WriteString("POST /putMedia HTTP/1.1\r\n")
			for k, v := range headers {
				req.WriteString(k + ": " + v + "\r\n")
			}
			req.WriteString("Authorization: " + auth + "\r\n\r\n")
			if _, err := conn.Write([]byte(req.String())); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			if expect {
				cont, err := http.ReadResponse(br, nil)
				if err != nil || cont.StatusCode != http.StatusContinue {
					t.Fatalf("want 100 Continue first, got %v %v", cont, err)
				}
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				typ, msg := apiErrorOf(t, resp)
				t.Fatalf("status %d %s %s", resp.StatusCode, typ, msg)
			}
			body := m.bytes()
			go func() {
				// Chunks of odd sizes, like a producer's write callbacks.
				for off := 0; off < len(body); {
					n := min(4093, len(body)-off)
					fmt.Fprintf(conn, "%x\r\n", n)
					conn.Write(body[off : off+n])
					conn.Write([]byte("\r\n"))
					off += n
				}
				conn.Write([]byte("0\r\n\r\n"))
			}()
			n := 0
			dec := newAckDecoder(resp)
			for {
				a, ok := dec()
				if !ok {
					break
				}
				if a.EventType == "ERROR" {
					t.Fatalf("error ack %+v", a)
				}
				n++
			}
			if n != 3*len(m.clusters) || len(srv.Fragments("cam")) != len(m.clusters) {
				t.Fatalf("%d acks, %d fragments", n, len(srv.Fragments("cam")))
			}
		})
	}
}
