use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use burn_communication::{CommunicationChannel, Message, Protocol, ProtocolClient};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, RwLock};

use crate::{NodeId, node::base::NodeState};

/// Handles the status of sync requests from other nodes
pub(crate) struct SyncService<P: Protocol> {
    /// Current node's state, shared with the thread that does aggregations
    node_state: Arc<RwLock<Option<NodeState>>>,
    /// For each other node, the number of its sync announcements that no round has consumed.
    syncing_peers: Mutex<HashMap<NodeId, usize>>,
    /// Notification on each incoming sync request
    sync_notif: Notify,

    _p: PhantomData<P>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncRequest(NodeId);

impl<P: Protocol> SyncService<P> {
    pub fn new(node_state: Arc<RwLock<Option<NodeState>>>) -> Self {
        Self {
            node_state,
            syncing_peers: Mutex::new(HashMap::new()),
            sync_notif: Notify::new(),
            _p: PhantomData,
        }
    }

    fn add_syncing_peer(&self, peer: NodeId) {
        let mut syncing_peers = self.syncing_peers.lock().unwrap();
        *syncing_peers.entry(peer).or_default() += 1;
    }

    /// Sync with all peers.
    ///
    /// Returns once every other node has announced this round. A node that is already a round
    /// ahead may announce its next round before this one ends: announcements are counted per
    /// node, and each round consumes one from every other node.
    pub async fn sync(&self) {
        // we can't sync while we register
        let node_state = self.node_state.read().await;
        let node_state = node_state
            .as_ref()
            .expect("Trying to sync a node before having registered to the orchestrator");

        for (id, addr) in &node_state.nodes {
            if *id == node_state.node_id {
                continue;
            }

            let mut connection = P::Client::connect(addr.clone(), "sync")
                .await
                .expect("Couldn't connect to peer for sync");
            let msg = SyncRequest(node_state.node_id);
            let sync_bytes = rmp_serde::to_vec(&msg).unwrap();
            connection
                .send(Message::new(sync_bytes.into()))
                .await
                .expect("Peer closed connection unexpectedly");
        }
        let others = node_state
            .nodes
            .keys()
            .filter(|id| **id != node_state.node_id)
            .cloned()
            .collect::<Vec<_>>();
        loop {
            // Listen before looking: an announcement that comes between the look and the wait
            // would otherwise be missed (`notify_waiters` wakes only futures that exist).
            let announced = std::pin::pin!(self.sync_notif.notified());
            {
                let mut syncing_peers = self.syncing_peers.lock().unwrap();
                if others
                    .iter()
                    .all(|id| syncing_peers.get(id).is_some_and(|n| *n > 0))
                {
                    // all nodes have synced: this round's announcements are consumed
                    for id in &others {
                        *syncing_peers.get_mut(id).unwrap() -= 1;
                    }
                    return;
                }
            }
            // Wait for the next sync to come in
            announced.await
        }
    }

    pub async fn handle_sync_connection<C: CommunicationChannel>(&self, mut channel: C) {
        let msg = channel.recv().await.unwrap();
        let Some(msg) = msg else {
            return;
        };

        let msg = rmp_serde::from_slice::<SyncRequest>(&msg.data).unwrap();

        self.add_syncing_peer(msg.0);

        self.sync_notif.notify_waiters();
    }
}
