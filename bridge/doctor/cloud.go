package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/encoder-bridge/encoder-bridge/bridge/link"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Clock skew bounds: past warnSkew logs and card validity read oddly to
// staff; past failSkew TLS certificates start to look expired or not yet
// valid, and the cloud's times disagree with the PC's in every log.
const (
	warnSkew = 30 * time.Second
	failSkew = 2 * time.Minute
)

// NewLink builds the bridge's link to one of its cloud URLs from its
// configuration; the command passes the one "run" uses, so the doctor
// dials exactly as the service.
type NewLink func(token, url string) (*link.Link, error)

// checkCloud checks every cloud URL in turn: with several instances, each
// one the bridge may fail over to must work. Their details name the URL.
func (r *run) checkCloud(ctx context.Context, token string, tokenOK bool) {
	urls := r.cfg.Cloud.Endpoints()
	if len(urls) == 0 {
		urls = []string{""}
	}
	for _, raw := range urls {
		from := len(r.results)
		r.checkCloudURL(ctx, raw, token, tokenOK)
		if len(urls) > 1 {
			for i := from; i < len(r.results); i++ {
				r.results[i].Detail = raw + ": " + r.results[i].Detail
			}
		}
	}
}

func (r *run) checkCloudURL(ctx context.Context, raw, token string, tokenOK bool) {
	u, err := link.Endpoint(raw)
	if err != nil {
		for _, c := range []string{checkDNS, checkTCP, checkTLS, checkHello, checkClock} {
			r.skip(c, "no usable cloud.url")
		}
		return
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "ws" {
			port = "80"
		}
	}
	// A proxy the link would use is what this PC must reach; the proxy
	// then reaches the cloud.
	via := ""
	if p := proxyFor(u); p != nil {
		host, port = p.Hostname(), p.Port()
		if port == "" {
			port = "80"
		}
		via = " (through the proxy " + p.Host + ")"
	}

	reachable := r.checkResolve(ctx, host, via)
	if reachable {
		reachable = r.checkDial(ctx, host, port, via)
	} else {
		r.skip(checkTCP, "the name does not resolve")
	}
	if !reachable {
		r.skip(checkTLS, "cloud not reachable")
		r.skip(checkHello, "cloud not reachable")
		r.skip(checkClock, "cloud not reachable")
		return
	}
	if !tokenOK {
		r.skip(checkTLS, "no token: the link cannot be built")
		r.skip(checkHello, "no token")
		r.skip(checkClock, "no token")
		return
	}
	l, err := r.env.NewLink(token, raw)
	if err != nil {
		r.fail(checkTLS, err.Error(), "check cloud.ca_file and cloud.spki_pin in the configuration")
		r.skip(checkHello, "the link cannot be built")
		r.skip(checkClock, "the link cannot be built")
		return
	}
	switch {
	case u.Scheme == "ws":
		r.skip(checkTLS, "ws:// to a loopback cloud: no TLS")
	case via != "":
		r.skip(checkTLS, "through a proxy: checked with the cloud token below")
	default:
		if !r.checkHandshake(ctx, l.TLSConfig(), u.Hostname(), net.JoinHostPort(host, port)) {
			r.skip(checkHello, "TLS failed")
			r.skip(checkClock, "TLS failed")
			return
		}
	}
	r.checkHelloAndClock(ctx, l)
}

func proxyFor(u *url.URL) *url.URL {
	httpURL := *u
	httpURL.Scheme = map[string]string{"wss": "https", "ws": "http"}[u.Scheme]
	p, err := http.ProxyFromEnvironment(&http.Request{URL: &httpURL})
	if err != nil {
		return nil
	}
	return p
}

func (r *run) checkResolve(ctx context.Context, host, via string) bool {
	if net.ParseIP(host) != nil {
		r.pass(checkDNS, host+" is an address"+via)
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, r.env.Timeout)
	defer cancel()
	addrs, err := r.env.LookupHost(ctx, host)
	if err != nil {
		r.fail(checkDNS, fmt.Sprintf("%s%s: %v", host, via, err), "check the PC's network and DNS server (ipconfig /all, resolvectl status); the hotel's firewall may block the cloud's name")
		return false
	}
	r.pass(checkDNS, fmt.Sprintf("%s%s: %v", host, via, addrs))
	return true
}

func (r *run) checkDial(ctx context.Context, host, port, via string) bool {
	ctx, cancel := context.WithTimeout(ctx, r.env.Timeout)
	defer cancel()
	addr := net.JoinHostPort(host, port)
	start := r.env.Now()
	c, err := r.env.DialContext(ctx, "tcp", addr)
	if err != nil {
		r.fail(checkTCP, fmt.Sprintf("%s%s: %v", addr, via, err), "the network must allow outgoing connections to this address and port (the bridge needs no incoming one): ask the hotel's IT to open it")
		return false
	}
	c.Close()
	r.pass(checkTCP, fmt.Sprintf("%s%s in %s", addr, via, max(r.env.Now().Sub(start).Round(time.Millisecond), time.Millisecond)))
	return true
}

// checkHandshake verifies the cloud's certificate as the link does, and
// names the issuer when it does not verify: a TLS-inspecting proxy or
// firewall re-signs connections with its own CA.
func (r *run) checkHandshake(ctx context.Context, tc *tls.Config, serverName, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, r.env.Timeout)
	defer cancel()
	raw, err := r.env.DialContext(ctx, "tcp", addr)
	if err != nil {
		r.fail(checkTLS, err.Error(), "the cloud stopped answering: run the doctor again")
		return false
	}
	defer raw.Close()
	tc.ServerName = serverName
	conn := tls.Client(raw, tc)
	err = conn.HandshakeContext(ctx)
	if err == nil {
		st := conn.ConnectionState()
		leaf := st.PeerCertificates[0]
		r.pass(checkTLS, fmt.Sprintf("%s, certificate for %s issued by %q, valid until %s", tls.VersionName(st.Version), serverName, leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly)))
		return true
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		issuer := "unknown"
		if unknown.Cert != nil {
			issuer = unknown.Cert.Issuer.String()
		}
		r.fail(checkTLS, fmt.Sprintf("the certificate is signed by %q, which this PC does not trust", issuer),
			"if that is the hotel's firewall or proxy inspecting TLS, ask IT to exempt the cloud's host from inspection (or, if the property accepts it, add the firewall's CA with cloud.ca_file); otherwise the connection is being intercepted")
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		r.fail(checkTLS, err.Error(), "check this PC's clock first (see the clock check); if it is right, the cloud's certificate has expired: tell the cloud's operator")
	case errors.As(err, &host):
		r.fail(checkTLS, err.Error(), "something other than the cloud answers at this address (a captive portal or a proxy): check cloud.url and the network")
	case errors.Is(err, link.ErrPinMismatch):
		r.fail(checkTLS, err.Error(), "the cloud's key changed or the connection is intercepted: confirm with the cloud's operator before updating cloud.spki_pin")
	default:
		r.fail(checkTLS, err.Error(), "check cloud.url (wss://host[:port]) and that nothing between this PC and the cloud alters the connection")
	}
	return false
}

func (r *run) checkHelloAndClock(ctx context.Context, l *link.Link) {
	ctx, cancel := context.WithTimeout(ctx, r.env.Timeout)
	defer cancel()
	w, rtt, err := Hello(ctx, l, r.cfg.Cloud.BridgeID, r.env.Version, nil)
	if err != nil {
		fix := "see the error: the cloud is reachable, the hello failed"
		switch {
		case errors.Is(err, link.ErrAuthRevoked):
			fix = "the cloud refused the token: create a new one with \"encoder-cloud bridge-token create\" and write it to the token file"
		case errors.Is(err, ErrHelloRefused):
			fix = "the cloud refused this bridge: cloud.bridge_id must be the id the token was created for"
		}
		r.fail(checkHello, err.Error(), fix)
		r.skip(checkClock, "no welcome from the cloud")
		return
	}
	r.pass(checkHello, fmt.Sprintf("%s welcomed bridge %q in %s", l.URL(), r.cfg.Cloud.BridgeID, max(rtt.Round(time.Millisecond), time.Millisecond)))
	if w.ServerTime.IsZero() {
		r.skip(checkClock, "the cloud sent no time")
		return
	}
	// The cloud stamped its time somewhere inside the round trip.
	skew := w.ServerTime.Sub(r.env.Now().Add(-rtt / 2)).Round(time.Second)
	abs := skew.Abs()
	detail := fmt.Sprintf("this PC's clock is %s %s the cloud's", abs, map[bool]string{true: "behind", false: "ahead of"}[skew > 0])
	fix := "turn on time synchronisation: timedatectl set-ntp true (Linux) or w32tm /resync (Windows); a PC that loses time at every start needs a new CMOS battery"
	switch {
	case abs > failSkew:
		r.fail(checkClock, detail, fix)
	case abs > warnSkew:
		r.warn(checkClock, detail, fix)
	default:
		r.pass(checkClock, fmt.Sprintf("within %s of the cloud's", max(abs, time.Second)))
	}
}

// ErrHelloRefused: the cloud answered the hello with an error.
var ErrHelloRefused = errors.New("the cloud refused the hello")

// Hello connects once as the bridge, says hello with encoders, and waits
// for the welcome. A job the cloud offers meanwhile is left unacknowledged,
// so it is offered again to the service.
func Hello(ctx context.Context, l *link.Link, bridgeID, version string, encoders []protocol.Encoder) (*protocol.Welcome, time.Duration, error) {
	start := time.Now()
	c, err := l.Dial(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	if encoders == nil {
		encoders = []protocol.Encoder{}
	}
	m := protocol.New(protocol.TypeHello)
	m.Hello = &protocol.Hello{BridgeID: bridgeID, SoftwareVersion: version, ProtocolVersion: protocol.Version, Encoders: encoders}
	b, err := protocol.Encode(m)
	if err != nil {
		return nil, 0, err
	}
	if err := c.Send(ctx, b); err != nil {
		return nil, 0, err
	}
	for {
		b, err := c.Recv(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, 0, fmt.Errorf("connected to %s but no welcome in time", l.URL())
			}
			return nil, 0, err
		}
		m, err := protocol.Decode(b)
		if err != nil {
			return nil, 0, fmt.Errorf("the cloud sent a message this bridge cannot read: %w", err)
		}
		switch m.Type {
		case protocol.TypeWelcome:
			return m.Welcome, time.Since(start), nil
		case protocol.TypeError:
			return nil, 0, fmt.Errorf("%w: %s: %s", ErrHelloRefused, m.Error.Code, m.Error.Message)
		}
	}
}
