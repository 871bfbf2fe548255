package pcsc

import (
	"time"

	"github.com/ebfe/scard"
)

// scardContext is the part of *scard.Context this package uses, so the
// recovery logic can run against a fake service in tests.
type scardContext interface {
	ListReaders() ([]string, error)
	GetStatusChange(states []scard.ReaderState, timeout time.Duration) error
	Connect(reader string, mode scard.ShareMode, proto scard.Protocol) (scardCard, error)
	Cancel() error
	Release() error
}

// scardCard is the part of *scard.Card this package uses.
type scardCard interface {
	Status() (*scard.CardStatus, error)
	ActiveProtocol() scard.Protocol
	Transmit(cmd []byte) ([]byte, error)
	Reconnect(mode scard.ShareMode, proto scard.Protocol, disp scard.Disposition) error
	Disconnect(disp scard.Disposition) error
	GetAttrib(id scard.Attrib) ([]byte, error)
}

type realContext struct{ *scard.Context }

func (r realContext) Connect(name string, mode scard.ShareMode, proto scard.Protocol) (scardCard, error) {
	card, err := r.Context.Connect(name, mode, proto)
	if err != nil {
		return nil, err
	}
	return card, nil
}

func establishReal() (scardContext, error) {
	c, err := scard.EstablishContext()
	if err != nil {
		return nil, err
	}
	return realContext{c}, nil
}
