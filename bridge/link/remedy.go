package link

import (
	"crypto/x509"
	"errors"
	"net"
)

// Remedy tells staff what to do about err, a reason the link is down.
func Remedy(err error) string {
	var (
		dns       *net.DNSError
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrAuthRevoked):
		return "The cloud refused the bridge's token: create a new one with 'encoder-cloud bridge-token create', " +
			"replace the token file (cloud.token_file) and restart the bridge."
	case errors.Is(err, ErrPinMismatch):
		return "The cloud's certificate does not carry the pinned key (cloud.spki_pin): a proxy that inspects TLS " +
			"may be re-signing it; exempt the cloud's host from inspection, or update the pin if the cloud changed its key."
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &host):
		return "The cloud's certificate is not trusted: if a proxy inspects TLS, exempt the cloud's host from it " +
			"or give its CA in cloud.ca_file; check the PC's date too."
	case errors.As(err, &dns):
		return "The cloud's host name does not resolve: check this PC's network and DNS."
	}
	return "Check that this PC reaches the internet and the cloud (cloud.url); 'encoder-bridge doctor' tests each step."
}
