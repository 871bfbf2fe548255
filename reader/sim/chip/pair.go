package chip

import "sync"

// Pair is two cards in one reader's field. A reader that re-activates the
// field (a reset after a refused key) runs anticollision again and may
// select the other card; SwapAtReset makes a chosen Reset do so, so tests
// can check that a job notices. A Pair starts with the first card
// selected and never swaps until SwapAtReset asks.
type Pair struct {
	mu     sync.Mutex
	cards  [2]Card
	cur    int
	resets int // since the last SwapAtReset
	swapAt int
}

// NewPair puts selected and other in one field, selected first.
func NewPair(selected, other Card) *Pair {
	return &Pair{cards: [2]Card{selected, other}}
}

// SwapAtReset makes the n-th Reset from now on select the other card; 0
// never swaps. It restarts the count Resets reports.
func (p *Pair) SwapAtReset(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resets, p.swapAt = 0, n
}

// Resets is the number of Resets since the last SwapAtReset.
func (p *Pair) Resets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resets
}

// Selected is the card the reader talks to.
func (p *Pair) Selected() Card {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cards[p.cur]
}

func (p *Pair) ATR() []byte                          { return p.Selected().ATR() }
func (p *Pair) UID() []byte                          { return p.Selected().UID() }
func (p *Pair) Transmit(apdu []byte) ([]byte, error) { return p.Selected().Transmit(apdu) }

// Reset re-activates the field, selecting the other card if SwapAtReset
// asked for this Reset.
func (p *Pair) Reset() {
	p.mu.Lock()
	p.resets++
	if p.resets == p.swapAt {
		p.cur = 1 - p.cur
	}
	c := p.cards[p.cur]
	p.mu.Unlock()
	c.Reset()
}
