package agent

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge/status"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// Observer hears what the agent does, for local monitoring: the status
// page and metrics (bridge/status.Recorder implements it). Its methods
// return at once; the agent calls them outside its own lock except
// SetEncoders, which must not call back into the agent.
type Observer interface {
	// LinkUp: the cloud welcomed the bridge on a new connection.
	LinkUp()
	// Contact: a message arrived from the cloud.
	Contact()
	// SetEncoders: the encoders attached now.
	SetEncoders([]status.EncoderInfo)
	// CardPresent: a card was put on or taken off encoder id.
	CardPresent(id string, present bool)
	// JobDone: a job finished with a result.
	JobDone(status.JobReport)
	// ReadersFailed: the smart-card service could not list the readers.
	ReadersFailed(err error)
}

var _ Observer = (*status.Recorder)(nil)

// cardProbe is how long a card watcher's first look may take: a wait
// for a card that has not returned by then means there is none.
const cardProbe = 500 * time.Millisecond

// observeEncodersLocked tells the observer the encoders now online and
// starts or stops their card watchers.
func (a *Agent) observeEncodersLocked(ctx context.Context) {
	o := a.opts.Observer
	if o == nil {
		return
	}
	list := a.encoderListLocked()
	infos := make([]status.EncoderInfo, 0, len(list))
	for _, e := range list {
		infos = append(infos, status.EncoderInfo{ID: string(e.ID), Name: e.DisplayName, Reader: e.ReaderName})
	}
	o.SetEncoders(infos)
	for id, w := range a.cardWatch {
		if e, ok := a.encoders[id]; !ok || e.ReaderName != w.reader {
			w.stop()
			delete(a.cardWatch, id)
		}
	}
	for id, e := range a.encoders {
		if _, ok := a.cardWatch[id]; ok || ctx.Err() != nil {
			continue
		}
		wctx, stop := context.WithCancel(ctx)
		w := &cardWatch{reader: e.ReaderName, stop: stop}
		a.cardWatch[id] = w
		a.watchWG.Go(func() {
			a.watchCard(wctx, id, e.ReaderName)
			// Gone with its reader: the next change of readers starts
			// another if the encoder is back.
			a.mu.Lock()
			if a.cardWatch[id] == w {
				delete(a.cardWatch, id)
			}
			a.mu.Unlock()
			stop()
		})
	}
}

// cardWatch is the card watcher of one encoder.
type cardWatch struct {
	reader string
	stop   context.CancelFunc
}

// watchCard reports a card put on or taken off the encoder id until ctx
// ends or the reader goes. It only waits on the reader's state, which
// needs no connection, so a job on the same encoder is not disturbed.
func (a *Agent) watchCard(ctx context.Context, id protocol.EncoderID, name string) {
	log := a.log.With(zap.String(FieldEncoder, string(id)), zap.String(FieldReader, name))
	present, known := false, false
	for ctx.Err() == nil {
		var err error
		if !known {
			// A wait for a card returns at once when there is one.
			pctx, cancel := context.WithTimeout(ctx, cardProbe)
			err = a.readers.WaitCard(pctx, name, true)
			cancel()
			present = err == nil
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				err = nil
			}
		} else if err = a.readers.WaitCard(ctx, name, !present); err == nil {
			present = !present
		}
		switch {
		case err == nil:
			known = true
			a.opts.Observer.CardPresent(string(id), present)
		case ctx.Err() != nil, errors.Is(err, reader.ErrReaderGone), errors.Is(err, reader.ErrClosed), errors.Is(err, reader.ErrUnknownReader):
			return
		default:
			// The service went away (the reader watcher says so): look
			// again after the pause it takes.
			log.Debug("cannot tell whether a card is on the encoder; retrying", zap.Error(err))
			known = false
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.opts.ReaderRetry):
			}
		}
	}
}

// stopCardWatchers stops every card watcher and waits for them.
func (a *Agent) stopCardWatchers() {
	a.mu.Lock()
	for id, w := range a.cardWatch {
		w.stop()
		delete(a.cardWatch, id)
	}
	a.mu.Unlock()
	a.watchWG.Wait()
}

// observeJob reports a finished job. apdus is how many APDUs it sent.
func (a *Agent) observeJob(job protocol.Job, r protocol.Result, took time.Duration, apdus int) {
	o := a.opts.Observer
	if o == nil {
		return
	}
	rep := status.JobReport{EncoderID: string(job.EncoderID), Kind: string(job.Kind), Outcome: status.OutcomeOK, Duration: took, APDUs: apdus}
	if r.Error != nil {
		rep.Outcome, rep.Message = string(r.Error.Type), r.Error.Message
	}
	o.JobDone(rep)
}
