// Package webhook delivers a workspace's events to its webhooks the way
// Seam does: from the store's outbox (store.Delivery rows written in the
// transaction of each change), at least once, in order per webhook,
// retried with exponential backoff for a day, and signed with Seam's
// scheme (Svix's: HMAC-SHA256 of "id.timestamp.body" under a "whsec_"
// secret), so that Seam's own verifier, npm @seamapi/webhook, accepts the
// deliveries unchanged.
//
// A receiver that is down or slow holds only its own webhook's queue:
// each post runs in its own goroutine, bounded by a timeout, and the
// leases in the store let several cloud instances share the outbox.
//
// Secrets never reach a log or an error. It imports store and clock only;
// the cloud package runs it.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every webhook secret, as in Svix and Seam.
const SecretPrefix = "whsec_"

// Headers Svix (and so Seam) sends with each delivery. The verifier also
// reads "webhook-id" etc. but Seam's deliveries carry these.
const (
	HeaderID        = "svix-id"
	HeaderTimestamp = "svix-timestamp"
	HeaderSignature = "svix-signature"
)

// ErrBadSecret is a secret that is not "whsec_" and base64.
var ErrBadSecret = errors.New("webhook: malformed secret")

// NewSecret makes a webhook secret: "whsec_" and the base64 of 24 random
// bytes, the form Svix gives its endpoints.
func NewSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook: secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret // the secret itself stays out of the error
	}
	return key, nil
}

// Sign returns the svix-signature header of body sent as message msgID at
// ts: "v1," and the base64 HMAC-SHA256, under the secret's decoded key, of
// msgID "." Unix seconds "." body.
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// ErrBadSignature: a delivery whose signature does not verify.
var ErrBadSignature = errors.New("webhook: signature does not match")

// Tolerance is how far a delivery's timestamp may be from the receiver's
// clock, as in Svix's verifier.
const Tolerance = 5 * time.Minute

// Verify checks a delivery the way Seam's verifier does: the timestamp
// within Tolerance of now, and one of the space-separated v1 signatures
// matching. For receivers written in Go and for tests.
func Verify(secret string, h interface{ Get(string) string }, body []byte, now time.Time) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: missing %s, %s or %s", ErrBadSignature, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp", ErrBadSignature)
	}
	ts := time.Unix(sec, 0)
	if now.Sub(ts) > Tolerance || ts.Sub(now) > Tolerance {
		return fmt.Errorf("%w: timestamp %s too far from now", ErrBadSignature, ts.UTC().Format(time.RFC3339))
	}
	want, err := Sign(secret, id, ts, body)
	if err != nil {
		return err
	}
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}

// ErrBadURL is a webhook URL this cloud will not post to.
var ErrBadURL = errors.New("webhook: URL not allowed")

// CheckURL says whether events may be posted to raw: an absolute https
// URL with a host, or, only with allowLoopback (a development or test
// flag), http to a loopback address. Addresses are checked again when a
// delivery connects (Dialer), where a name has resolved.
func CheckURL(raw string, allowLoopback bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL", ErrBadURL)
	}
	if u.User != nil {
		return fmt.Errorf("%w: no user information allowed", ErrBadURL)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w: no host", ErrBadURL)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w: no fragment allowed", ErrBadURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowLoopback || !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("%w: must be https (http is allowed only to a loopback address when the cloud runs with --dev-loopback-webhooks)", ErrBadURL)
		}
	default:
		return fmt.Errorf("%w: must be https", ErrBadURL)
	}
	if !allowLoopback && isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%w: loopback addresses are allowed only with --dev-loopback-webhooks", ErrBadURL)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// publicIP reports whether ip may receive deliveries when loopback is not
// allowed: not loopback, private, link-local (cloud metadata services),
// multicast or unspecified.
func publicIP(ip net.IP) bool {
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified())
}
