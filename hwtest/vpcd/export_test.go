package vpcd

// Exports for the tests in package vpcd_test, which run through pcscd and
// cannot live in this package: they import hwtest, which imports vpcd.

type TestCard = testCard

var (
	NewTestCard = newTestCard
	GetUID      = getUID
)

func (c *testCard) FailAt(n int, err error)     { c.failAt(n, err) }
func (c *testCard) Counts() (apdus, resets int) { return c.counts() }

// SetQuickAck switches TCP_QUICKACK for slots inserted afterwards.
func SetQuickAck(on bool) (restore func()) {
	old := quickAckOn.Swap(on)
	return func() { quickAckOn.Store(old) }
}
