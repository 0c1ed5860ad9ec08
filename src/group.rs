//! Group backchannels: membership that every member verifies, as plain state
//! with no IO.
//!
//! A group is created by its moderator; its id commits to the moderator's key
//! ([`group_id`]), so only the moderator's signed state ops count. A state op
//! carries the whole membership and a version; the highest version wins. Any
//! member may leave with a signed leave naming the version it saw; a leave
//! removes the member from every state up to that version (a later state from
//! the moderator may add it back). Given the same set of ops, every member
//! computes the same membership, whatever order they arrived in.

use std::collections::{BTreeSet, HashMap};

use libp2p::PeerId;
use sha2::{Digest, Sha256};

use crate::protocol::{GROUP_DOMAIN, MAX_WIRE_MEMBERS};

crate::id::hex_id! {
    /// A group's id: it commits to the moderator's key (`group_id`).
    GroupId
}

/// The id of the group a moderator creates with `nonce`.
pub fn group_id(moderator: &PeerId, nonce: &[u8; 16]) -> Option<GroupId> {
    let key = crate::id::key_of(moderator)?;
    let mut h = Sha256::new();
    h.update(GROUP_DOMAIN);
    h.update(key);
    h.update(nonce);
    Some(GroupId::from_bytes(h.finalize().into()))
}

/// A signed change to a group (its author is the envelope's signer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOp {
    /// The group.
    pub group: GroupId,
    /// The group's creation nonce.
    pub nonce: [u8; 16],
    /// State: the new version. Leave: the version the leaver saw.
    pub version: u64,
    /// What changes.
    pub change: GroupChange,
    /// The author's clock.
    pub time_ms: u64,
}

/// The two kinds of group op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupChange {
    /// The moderator's new state: name and members (moderator included).
    State {
        /// The name.
        name: String,
        /// The members.
        members: Vec<PeerId>,
    },
    /// The author leaves.
    Leave,
}

/// A message to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMessage {
    /// The group.
    pub group: GroupId,
    /// The text.
    pub text: String,
    /// The author's clock.
    pub time_ms: u64,
    /// The Lamport clock: display order is (lamport, message id).
    pub lamport: u64,
    /// The author's display name.
    pub nick: Option<String>,
    /// The group state version the author saw.
    pub version: u64,
}

/// What a node knows of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// The id.
    pub id: GroupId,
    /// The creation nonce.
    pub nonce: [u8; 16],
    /// The moderator.
    pub moderator: PeerId,
    /// The current name.
    pub name: String,
    /// The version of the latest state op.
    pub version: u64,
    /// The members of the latest state op.
    pub listed: Vec<PeerId>,
    /// Members who left, with the version they saw.
    pub left: HashMap<PeerId, u64>,
    /// The highest Lamport clock seen in the group.
    pub lamport: u64,
}

impl GroupState {
    /// The members now: listed, minus those whose leave covers this version.
    pub fn members(&self) -> Vec<PeerId> {
        self.listed
            .iter()
            .filter(|m| self.left.get(m).is_none_or(|v| *v < self.version))
            .copied()
            .collect()
    }

    /// Whether `peer` is a member now.
    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members().contains(peer)
    }
}

/// Why a group op or message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupReject {
    /// The group is not known here, or this node has not yet applied the
    /// state the sender saw: retry later.
    #[error("unknown group")]
    UnknownGroup,
    /// A state op not signed by the moderator the group id commits to.
    #[error("not the moderator")]
    NotModerator,
    /// A leave or message from someone who is not a member, or a message to
    /// a node that is not one.
    #[error("not a member")]
    NotMember,
    /// A state without its moderator, with duplicates, or too many members.
    #[error("invalid membership")]
    InvalidMembership,
}

/// What applying an op changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The membership or name changed (or the group is new here).
    Changed {
        /// Members before (empty for a new group).
        before: Vec<PeerId>,
        /// Members after.
        after: Vec<PeerId>,
    },
    /// An older or repeated op: nothing changed.
    Unchanged,
}

/// Every group a node knows.
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<GroupId, GroupState>,
    max_members: usize,
}

impl Groups {
    /// No groups; states with more than `max_members` are refused.
    pub fn new(max_members: usize) -> Self {
        Self {
            groups: HashMap::new(),
            max_members: max_members.min(MAX_WIRE_MEMBERS),
        }
    }

    /// How many groups are known.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// A group.
    pub fn get(&self, id: &GroupId) -> Option<&GroupState> {
        self.groups.get(id)
    }

    /// Every group, by name.
    pub fn all(&self) -> Vec<&GroupState> {
        let mut v: Vec<_> = self.groups.values().collect();
        v.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        v
    }

    /// Applies a signed op by `author`.
    pub fn apply(&mut self, author: PeerId, op: &GroupOp) -> Result<Applied, GroupReject> {
        match &op.change {
            GroupChange::State { name, members } => {
                if group_id(&author, &op.nonce) != Some(op.group) {
                    return Err(GroupReject::NotModerator);
                }
                let unique: BTreeSet<_> = members.iter().collect();
                if op.version == 0
                    || !members.contains(&author)
                    || unique.len() != members.len()
                    || members.len() > self.max_members
                {
                    return Err(GroupReject::InvalidMembership);
                }
                let state = self.groups.entry(op.group).or_insert_with(|| GroupState {
                    id: op.group,
                    nonce: op.nonce,
                    moderator: author,
                    name: String::new(),
                    version: 0,
                    listed: Vec::new(),
                    left: HashMap::new(),
                    lamport: 0,
                });
                if op.version <= state.version {
                    return Ok(Applied::Unchanged);
                }
                let before = state.members();
                state.name = name.clone();
                state.version = op.version;
                state.listed = members.clone();
                Ok(Applied::Changed {
                    before,
                    after: state.members(),
                })
            }
            GroupChange::Leave => {
                let state = self.groups.get_mut(&op.group).ok_or(GroupReject::UnknownGroup)?;
                if op.nonce != state.nonce {
                    return Err(GroupReject::NotMember);
                }
                if op.version > state.version {
                    // The leaver saw a state this node has not applied yet.
                    return Err(GroupReject::UnknownGroup);
                }
                if !state.listed.contains(&author) {
                    return Err(GroupReject::NotMember);
                }
                let before = state.members();
                let seen = state.left.entry(author).or_insert(0);
                *seen = (*seen).max(op.version);
                let after = state.members();
                if before == after {
                    return Ok(Applied::Unchanged);
                }
                Ok(Applied::Changed { before, after })
            }
        }
    }

    /// Checks that `author` may send `msg` and that `me` is a member to
    /// receive it.
    pub fn check_message(&self, author: &PeerId, me: &PeerId, msg: &GroupMessage) -> Result<(), GroupReject> {
        let state = self.groups.get(&msg.group).ok_or(GroupReject::UnknownGroup)?;
        if msg.version > state.version {
            // The author saw a newer state (perhaps the one adding it).
            return Err(GroupReject::UnknownGroup);
        }
        if !state.is_member(author) || !state.is_member(me) {
            return Err(GroupReject::NotMember);
        }
        Ok(())
    }

    /// Notes a Lamport clock seen in a group.
    pub fn observe(&mut self, group: &GroupId, lamport: u64) {
        if let Some(s) = self.groups.get_mut(group) {
            s.lamport = s.lamport.max(lamport);
        }
    }

    /// The clock for this node's next message in a group.
    pub fn next_lamport(&mut self, group: &GroupId) -> u64 {
        match self.groups.get_mut(group) {
            Some(s) => {
                s.lamport = s.lamport.saturating_add(1);
                s.lamport
            }
            None => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn people(n: u8) -> Vec<PeerId> {
        (1..=n).map(|i| Identity::from_secret([i; 32]).peer_id()).collect()
    }

    fn state(group: GroupId, nonce: [u8; 16], version: u64, members: &[PeerId]) -> GroupOp {
        GroupOp {
            group,
            nonce,
            version,
            change: GroupChange::State {
                name: "mods".into(),
                members: members.to_vec(),
            },
            time_ms: 0,
        }
    }

    #[test]
    fn only_the_moderator_changes_membership_and_the_newest_state_wins() {
        let p = people(4);
        let nonce = [7; 16];
        let g = group_id(&p[0], &nonce).unwrap();
        let mut groups = Groups::new(15);
        assert!(matches!(
            groups.apply(p[0], &state(g, nonce, 1, &p[..3])),
            Ok(Applied::Changed { .. })
        ));
        assert_eq!(
            groups.apply(p[1], &state(g, nonce, 2, &p)),
            Err(GroupReject::NotModerator)
        );
        // Out of order: version 3 first, then the older version 2 changes nothing.
        groups.apply(p[0], &state(g, nonce, 3, &[p[0], p[3]])).unwrap();
        assert_eq!(groups.apply(p[0], &state(g, nonce, 2, &p)), Ok(Applied::Unchanged));
        assert_eq!(groups.get(&g).unwrap().members(), vec![p[0], p[3]]);
        assert_eq!(
            groups.apply(p[0], &state(g, nonce, 4, &[p[1]])),
            Err(GroupReject::InvalidMembership),
            "the moderator stays a member"
        );
        assert_eq!(
            Groups::new(2).apply(p[0], &state(g, nonce, 1, &p)),
            Err(GroupReject::InvalidMembership)
        );
    }

    #[test]
    fn leaves_commute_with_states_and_a_later_state_can_readd() {
        let p = people(3);
        let nonce = [1; 16];
        let g = group_id(&p[0], &nonce).unwrap();
        let leave = GroupOp {
            group: g,
            nonce,
            version: 1,
            change: GroupChange::Leave,
            time_ms: 0,
        };
        let v1 = state(g, nonce, 1, &p);
        let v2 = state(g, nonce, 2, &p);
        // Two nodes see the same ops in different orders.
        let mut a = Groups::new(15);
        a.apply(p[0], &v1).unwrap();
        a.apply(p[2], &leave).unwrap();
        let mut b = Groups::new(15);
        assert_eq!(b.apply(p[2], &leave), Err(GroupReject::UnknownGroup), "retried later");
        b.apply(p[0], &v1).unwrap();
        b.apply(p[2], &leave).unwrap();
        assert_eq!(a.get(&g).unwrap().members(), vec![p[0], p[1]]);
        assert_eq!(a.get(&g).unwrap().members(), b.get(&g).unwrap().members());
        // Version 2 (after the leave) lists p[2] again: re-added.
        a.apply(p[0], &v2).unwrap();
        assert!(a.get(&g).unwrap().is_member(&p[2]));
        let outsider = people(4)[3];
        let leave_outsider = GroupOp { ..leave.clone() };
        assert_eq!(a.apply(outsider, &leave_outsider), Err(GroupReject::NotMember));
    }

    #[test]
    fn a_leave_ahead_of_this_nodes_state_is_retried_not_refused() {
        // The moderator adds C (version 2) while B is away; C leaves at
        // version 2; B gets the leave before the add.
        let p = people(3);
        let nonce = [3; 16];
        let g = group_id(&p[0], &nonce).unwrap();
        let leave = GroupOp {
            group: g,
            nonce,
            version: 2,
            change: GroupChange::Leave,
            time_ms: 0,
        };
        let mut b = Groups::new(15);
        b.apply(p[0], &state(g, nonce, 1, &p[..2])).unwrap();
        assert_eq!(
            b.apply(p[2], &leave),
            Err(GroupReject::UnknownGroup),
            "retried, not refused for good"
        );
        b.apply(p[0], &state(g, nonce, 2, &p)).unwrap();
        b.apply(p[2], &leave).unwrap();
        assert_eq!(b.get(&g).unwrap().members(), vec![p[0], p[1]]);
        assert_eq!(
            Groups::new(15).apply(p[0], &state(g, nonce, 0, &p)),
            Err(GroupReject::InvalidMembership),
            "version 0 makes no phantom group"
        );
    }

    #[test]
    fn messages_need_a_member_author_and_recipient() {
        let p = people(3);
        let nonce = [2; 16];
        let g = group_id(&p[0], &nonce).unwrap();
        let mut groups = Groups::new(15);
        groups.apply(p[0], &state(g, nonce, 1, &p[..2])).unwrap();
        let mut msg = GroupMessage {
            group: g,
            text: "hi".into(),
            time_ms: 0,
            lamport: 1,
            nick: None,
            version: 1,
        };
        assert_eq!(groups.check_message(&p[1], &p[0], &msg), Ok(()));
        assert_eq!(groups.check_message(&p[2], &p[0], &msg), Err(GroupReject::NotMember));
        assert_eq!(groups.check_message(&p[0], &p[2], &msg), Err(GroupReject::NotMember));
        msg.version = 2;
        assert_eq!(
            groups.check_message(&p[1], &p[0], &msg),
            Err(GroupReject::UnknownGroup),
            "behind: retry"
        );
        groups.observe(&g, 41);
        assert_eq!(groups.next_lamport(&g), 42);
        groups.observe(&g, u64::MAX);
        assert_eq!(groups.next_lamport(&g), u64::MAX, "no overflow from a hostile clock");
    }
}
