package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// Channel is the PostgreSQL notification channel of every instance.
const Channel = "encoder_bridge_cloud"

// Reconnect backoff of the listening connection.
const (
	reconnectBase = 100 * time.Millisecond
	reconnectMax  = 5 * time.Second
)

// Postgres is a Bus over PostgreSQL's LISTEN/NOTIFY: Listen holds one
// connection of its own (a pooled one would be handed to others between
// waits), and Publish sends NOTIFY on another, kept open and redialled
// when lost. Notifications are delivered to every listening session once
// the notifying statement commits, in order.
type Postgres struct {
	cfg *pgx.ConnConfig
	log *zap.Logger

	mu  sync.Mutex // one NOTIFY at a time on pub
	pub *pgx.Conn
}

// OpenPostgres checks dsn (a postgres:// URL) and connects the publishing
// connection, so a wrong URL fails at start.
func OpenPostgres(ctx context.Context, dsn string, log *zap.Logger) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("bus: the database URL does not parse")
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Postgres{cfg: cfg, log: log}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.pubConn(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, p.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %s: %w", p.cfg.Host, scrub(err))
	}
	return c, nil
}

// pubConn returns the publishing connection, dialling it if needed; p.mu
// is held.
func (p *Postgres) pubConn(ctx context.Context) (*pgx.Conn, error) {
	if p.pub != nil && !p.pub.IsClosed() {
		return p.pub, nil
	}
	c, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	p.pub = c
	return c, nil
}

// Publish sends e with pg_notify. A connection lost on the way is
// redialled once.
func (p *Postgres) Publish(ctx context.Context, e Event) error {
	payload, err := encode(e)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for try := 0; ; try++ {
		c, err := p.pubConn(ctx)
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, payload)
		if err == nil {
			return nil
		}
		c.Close(context.Background())
		p.pub = nil
		if try > 0 || ctx.Err() != nil {
			return fmt.Errorf("bus: notify: %w", scrub(err))
		}
	}
}

// Listen listens on a connection of its own until ctx ends. Each time
// LISTEN takes effect, the first time included, it delivers Resync: what
// was notified before (while the instance started, or while the
// connection was lost) is lost, and the rows tell it. When the connection
// is lost it dials again with backoff.
func (p *Postgres) Listen(ctx context.Context, instance string, fn func(Event)) error {
	attempt := 0
	for {
		listened, err := p.listenOnce(ctx, instance, fn)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			attempt = 0 // the backoff is for a database that refuses
		}
		wait := min(reconnectMax, reconnectBase<<min(attempt, 16))
		wait = wait/2 + rand.N(wait/2+1)
		attempt++
		p.log.Warn("bus: listening connection lost; listening again", zap.Error(err), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// listenOnce listens until the connection fails, and reports whether it
// got as far as listening.
func (p *Postgres) listenOnce(ctx context.Context, instance string, fn func(Event)) (bool, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, fmt.Errorf("bus: listen: %w", scrub(err))
	}
	fn(Event{Kind: Resync})
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("bus: wait: %w", scrub(err))
		}
		e, err := decode(n.Payload)
		if err != nil {
			p.log.Warn("bus: notification ignored", zap.Error(err))
			continue
		}
		if e.Origin == instance {
			continue
		}
		fn(e)
	}
}

// Close closes the publishing connection.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pub != nil {
		err := p.pub.Close(context.Background())
		p.pub = nil
		return err
	}
	return nil
}

// scrub keeps a connection error's text free of the URL's password:
// pgx's connect errors name host, user and database only, but a parse
// error quotes its input.
func scrub(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("the database URL does not parse")
	}
	return err
}
