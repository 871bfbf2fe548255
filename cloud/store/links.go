package store

import (
	"context"
	"time"
)

// Several instances on one database: each records itself in instances
// and refreshes its row while it runs; the bridge a link of it holds is
// in bridge_links. A bridge is online when its row names an instance
// whose row is fresh, so the row of an instance that crashed stops
// counting on its own, without anyone deleting it, and never blocks
// dispatch: a job is announced to every instance, not routed by the row.

// HeartbeatInstance records that instance id runs at at.
func (t *Tx) HeartbeatInstance(ctx context.Context, id string, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO instances (id, started_at, seen_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`, id, ms(at), ms(at))
	return err
}

// RemoveInstance forgets a stopping instance and the links it held.
func (t *Tx) RemoveInstance(ctx context.Context, id string) error {
	if _, err := t.exec(ctx, `DELETE FROM bridge_links WHERE instance_id = ?`, id); err != nil {
		return err
	}
	_, err := t.exec(ctx, `DELETE FROM instances WHERE id = ?`, id)
	return err
}

// SetBridgeLink records that instance holds bridgeID's link since at.
func (t *Tx) SetBridgeLink(ctx context.Context, bridgeID, instance string, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO bridge_links (bridge_id, instance_id, linked_at) VALUES (?, ?, ?)
		ON CONFLICT (bridge_id) DO UPDATE SET instance_id = excluded.instance_id, linked_at = excluded.linked_at`,
		bridgeID, instance, ms(at))
	return err
}

// DropBridgeLink forgets bridgeID's link if instance holds it (the bridge
// may have moved to another instance meanwhile).
func (t *Tx) DropBridgeLink(ctx context.Context, bridgeID, instance string) error {
	_, err := t.exec(ctx, `DELETE FROM bridge_links WHERE bridge_id = ? AND instance_id = ?`, bridgeID, instance)
	return err
}

// BridgeLinked reports whether an instance seen at or after aliveSince
// holds bridgeID's link.
func (t *Tx) BridgeLinked(ctx context.Context, bridgeID string, aliveSince time.Time) (bool, error) {
	var n int
	err := t.queryRow(ctx, `SELECT COUNT(*) FROM bridge_links l JOIN instances i ON i.id = l.instance_id
		WHERE l.bridge_id = ? AND i.seen_at >= ?`, bridgeID, ms(aliveSince)).Scan(&n)
	return n > 0, err
}
