package state

import (
	"time"

	"github.com/hashicorp/go-memdb"
)

// Node is the node-wide operator state, a single row.
type Node struct {
	// Drained is set by an operator (POST /api/v1/node/drain): BGP
	// announces with the graceful-shutdown community, waits, withdraws.
	Drained bool
	Changed time.Time
	// ShuttingDown is set on SIGTERM: the same drain, then exit.
	ShuttingDown bool
	// Serving is set while the proxy's listeners are open: BGP never
	// announces a prefix that nothing would answer on.
	Serving bool
}

const nodeID = "node"

type nodeRow struct {
	ID string
	Node
}

func nodeTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: "node",
		Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

// Node returns the node state, adding its table to ws when ws is not nil.
func (s *Store) Node(ws memdb.WatchSet) Node {
	ch, raw, err := s.db.Txn(false).FirstWatch("node", "id", nodeID)
	if ws != nil {
		ws.Add(ch)
	}
	if err != nil || raw == nil {
		return Node{}
	}
	return raw.(*nodeRow).Node
}

// SetNodeDrained records an operator's node drain or undrain; it reports
// whether anything changed.
func (s *Store) SetNodeDrained(drained bool) (bool, error) {
	return s.updateNode(func(n *Node) bool {
		if n.Drained == drained {
			return false
		}
		n.Drained = drained
		return true
	})
}

// SetServing records whether the proxy is serving.
func (s *Store) SetServing(serving bool) (bool, error) {
	return s.updateNode(func(n *Node) bool {
		if n.Serving == serving {
			return false
		}
		n.Serving = serving
		return true
	})
}

// SetShuttingDown records that the process is stopping.
func (s *Store) SetShuttingDown() (bool, error) {
	return s.updateNode(func(n *Node) bool {
		if n.ShuttingDown {
			return false
		}
		n.ShuttingDown = true
		return true
	})
}

func (s *Store) updateNode(change func(*Node) bool) (bool, error) {
	txn := s.db.Txn(true)
	defer txn.Abort()
	row := nodeRow{ID: nodeID}
	raw, err := txn.First("node", "id", nodeID)
	if err != nil {
		return false, err
	}
	if raw != nil {
		row = *raw.(*nodeRow)
	}
	if !change(&row.Node) {
		return false, nil
	}
	row.Changed = time.Now()
	if err := txn.Insert("node", &row); err != nil {
		return false, err
	}
	txn.Commit()
	return true, nil
}
