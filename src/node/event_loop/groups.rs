//! The event loop's side of group backchannels: creating and changing
//! groups, sending to them, and checking what members send. The rules are in
//! `crate::group`; this is the IO around them.

use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::oneshot;

use super::{AfterFlush, EventLoop, MAX_OUTBOX, PendingDm, SentReply, check_text, item_of};
use crate::envelope::Signed;
use crate::group::{Applied, GroupChange, GroupId, GroupMessage, GroupOp, GroupReject};
use crate::id::{MessageId, RejectReason};
use crate::message::{Body, Refusal};
use crate::node::{Event, GroupEdit, GroupError, GroupInfo};
use crate::store::{Direction, now_ms};

/// Groups a node keeps at most. A stranger could otherwise make a node hold
/// any number of groups by naming it in them.
const MAX_GROUPS: usize = 1024;

impl EventLoop {
    /// A group op or message arrived over the DM protocol.
    pub(super) fn handle_group_request(&mut self, peer: PeerId, signed: Signed, channel: ResponseChannel<Vec<u8>>) {
        let author = signed.author();
        let show = match signed.body() {
            Body::GroupOp(op) => {
                let known = self.groups.get(&op.group).is_some();
                let listed_before = self.groups.get(&op.group).map(|g| g.listed.contains(&self.local));
                let names_me =
                    matches!(&op.change, GroupChange::State { members, .. } if members.contains(&self.local));
                if !known && matches!(op.change, GroupChange::Leave) {
                    // The group's creation may still be on its way.
                    return self.refuse_group(peer, channel, GroupReject::UnknownGroup);
                }
                if listed_before != Some(true) && !names_me {
                    // An op for a group this node is not in: not for us.
                    return self.refuse_group(peer, channel, GroupReject::NotMember);
                }
                if !known {
                    // A new group is like a DM from its moderator: contacts and
                    // the requests setting decide, and the number is bounded.
                    let from_contact = self.contacts.contains_key(&author);
                    if (!from_contact && !self.accept_requests) || self.groups.len() >= MAX_GROUPS {
                        self.stats.requests_refused += 1;
                        self.refuse(channel, Refusal::NotAccepted);
                        return;
                    }
                }
                match self.groups.apply(author, op) {
                    Ok(Applied::Changed { before, after }) => {
                        self.cancel_sends_to_removed(op.group, &before, &after);
                        let state = self.groups.get(&op.group).expect("just applied");
                        let (name, moderator) = (state.name.clone(), state.moderator);
                        let joined = !before.contains(&self.local) && after.contains(&self.local);
                        let blocked: Vec<PeerId> = after.iter().filter(|m| self.blocked.contains(m)).copied().collect();
                        if joined && !blocked.is_empty() {
                            self.emit(Event::GroupWarning {
                                group: op.group,
                                name: name.clone(),
                                blocked,
                            });
                        }
                        Event::GroupChanged {
                            group: op.group,
                            name,
                            moderator,
                            members: after,
                        }
                    }
                    // Nothing new; still logged once and acknowledged.
                    Ok(Applied::Unchanged) => Event::GroupChanged {
                        group: op.group,
                        name: self.groups.get(&op.group).map(|g| g.name.clone()).unwrap_or_default(),
                        moderator: self.groups.get(&op.group).map_or(author, |g| g.moderator),
                        members: self.groups.get(&op.group).map(|g| g.members()).unwrap_or_default(),
                    },
                    Err(reject) => return self.refuse_group(peer, channel, reject),
                }
            }
            Body::Group(msg) => {
                if let Err(reject) = self.groups.check_message(&author, &self.local, msg) {
                    return self.refuse_group(peer, channel, reject);
                }
                self.groups.observe(&msg.group, msg.lamport);
                Event::GroupMessage {
                    group: msg.group,
                    id: signed.id(),
                    from: author,
                    message: msg.clone(),
                }
            }
            _ => unreachable!("only group bodies come here"),
        };
        self.store_and_acknowledge(&signed, channel, show);
    }

    fn refuse_group(&mut self, peer: PeerId, channel: ResponseChannel<Vec<u8>>, reject: GroupReject) {
        let code = match reject {
            // Not an attack: the group's state op may still be on its way.
            GroupReject::UnknownGroup => Refusal::UnknownGroup,
            GroupReject::NotModerator => {
                self.reject(peer, RejectReason::NotModerator);
                Refusal::NotMember
            }
            GroupReject::NotMember | GroupReject::InvalidMembership => {
                self.reject(peer, RejectReason::NotMember);
                Refusal::NotMember
            }
        };
        self.refuse(channel, code);
    }

    /// Creates a group with this node as moderator.
    pub(super) fn group_create(
        &mut self,
        name: String,
        mut members: Vec<PeerId>,
        reply: oneshot::Sender<Result<GroupId, GroupError>>,
    ) {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the OS random number generator works");
        let group = crate::group::group_id(&self.local, &nonce).expect("own key is ed25519");
        if let Some(bad) = members.iter().find(|m| crate::id::key_of(m).is_none()) {
            let _ = reply.send(Err(GroupError::InvalidPeer(*bad)));
            return;
        }
        members.retain(|m| *m != self.local);
        members.sort();
        members.dedup();
        members.insert(0, self.local);
        let op = GroupOp {
            group,
            nonce,
            version: 1,
            change: GroupChange::State { name, members },
            time_ms: now_ms(),
        };
        match self.publish_group_op(op) {
            Ok(_) => self.commit.push(AfterFlush::Created { group, reply }),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Adds, removes, renames (moderator) or leaves (anyone).
    pub(super) fn group_edit(
        &mut self,
        group: GroupId,
        edit: GroupEdit,
        reply: oneshot::Sender<Result<(), GroupError>>,
    ) {
        let Some(state) = self.groups.get(&group).cloned() else {
            let _ = reply.send(Err(GroupError::UnknownGroup(group)));
            return;
        };
        let op = match edit {
            GroupEdit::Leave => GroupOp {
                group,
                nonce: state.nonce,
                version: state.version,
                change: GroupChange::Leave,
                time_ms: now_ms(),
            },
            edit => {
                if state.moderator != self.local {
                    let _ = reply.send(Err(GroupError::NotModerator(group)));
                    return;
                }
                let (mut name, mut members) = (state.name.clone(), state.members());
                if !members.contains(&self.local) {
                    // A moderator who left and edits again is back in.
                    members.insert(0, self.local);
                }
                if let GroupEdit::Add(peer) = &edit
                    && crate::id::key_of(peer).is_none()
                {
                    let _ = reply.send(Err(GroupError::InvalidPeer(*peer)));
                    return;
                }
                match edit {
                    GroupEdit::Add(peer) if !members.contains(&peer) => members.push(peer),
                    GroupEdit::Remove(peer) if peer != self.local => members.retain(|m| *m != peer),
                    GroupEdit::Rename(new) => name = new,
                    _ => {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                }
                GroupOp {
                    group,
                    nonce: state.nonce,
                    version: state.version + 1,
                    change: GroupChange::State { name, members },
                    time_ms: now_ms(),
                }
            }
        };
        match self.publish_group_op(op) {
            Ok(_) => self.commit.push(AfterFlush::Done { reply }),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Applies an own op, logs it and sends it to everyone it concerns (the
    /// members before and after, so the removed learn of it too).
    fn publish_group_op(&mut self, op: GroupOp) -> Result<MessageId, GroupError> {
        let before = self.groups.get(&op.group).map(|g| g.members()).unwrap_or_default();
        let after = match self.groups.apply(self.local, &op) {
            Ok(Applied::Changed { before, after }) => {
                self.cancel_sends_to_removed(op.group, &before, &after);
                after
            }
            Ok(Applied::Unchanged) => before.clone(),
            Err(GroupReject::InvalidMembership) => return Err(GroupError::GroupTooLarge(op.group)),
            Err(GroupReject::UnknownGroup) => return Err(GroupError::UnknownGroup(op.group)),
            Err(GroupReject::NotModerator) => return Err(GroupError::NotModerator(op.group)),
            Err(GroupReject::NotMember) => return Err(GroupError::NotMember(op.group)),
        };
        let mut to: Vec<PeerId> = before.into_iter().chain(after.iter().copied()).collect();
        to.sort();
        to.dedup();
        let signed = Signed::sign(&self.identity, Body::GroupOp(op.clone()));
        self.store.insert(&signed, Direction::Sent, &self.local)?;
        self.send_to(&signed, &to)?;
        let state = self.groups.get(&op.group).expect("applied");
        self.emit(Event::GroupChanged {
            group: op.group,
            name: state.name.clone(),
            moderator: state.moderator,
            members: after,
        });
        Ok(signed.id())
    }

    /// Sends a message to a group's current members.
    pub(super) fn group_send(
        &mut self,
        group: GroupId,
        text: String,
        reply: oneshot::Sender<Result<MessageId, GroupError>>,
    ) {
        if let Err(e) = check_text(&text) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let Some(members) = self.groups.get(&group).map(|g| g.members()) else {
            let _ = reply.send(Err(GroupError::UnknownGroup(group)));
            return;
        };
        if !members.contains(&self.local) {
            let _ = reply.send(Err(GroupError::NotMember(group)));
            return;
        }
        let msg = GroupMessage {
            group,
            text,
            time_ms: now_ms(),
            lamport: self.groups.next_lamport(&group),
            nick: self.nick.clone(),
            version: self.groups.get(&group).map_or(0, |g| g.version),
        };
        let signed = Signed::sign(&self.identity, Body::Group(msg));
        let result = self
            .store
            .insert(&signed, Direction::Sent, &self.local)
            .map_err(GroupError::from)
            .and_then(|_| self.send_to(&signed, &members));
        match result {
            Ok(n) => {
                self.group_sends.insert(
                    signed.id(),
                    GroupSend {
                        group,
                        of: n,
                        delivered: 0,
                    },
                );
                self.commit.push(AfterFlush::Sent {
                    id: signed.id(),
                    reply: SentReply::Group(reply),
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Puts a signed message in the outbox for each recipient but this node,
    /// and starts the attempts. Returns the number of recipients.
    fn send_to(&mut self, signed: &Signed, to: &[PeerId]) -> Result<usize, GroupError> {
        let mut n = 0;
        let local = self.local;
        if self.outbox.len() + to.len() > MAX_OUTBOX {
            return Err(GroupError::OutboxFull(self.outbox.len()));
        }
        for peer in to.iter().filter(|p| **p != local) {
            let entry = self.outbox.add(signed.id(), *peer, now_ms());
            self.store.outbox_put(&item_of(&entry))?;
            self.try_send((signed.id(), *peer));
            n += 1;
        }
        Ok(n)
    }

    /// After a receipt for a group message: "delivered to k of n".
    pub(super) fn group_progress(&mut self, pending: &PendingDm, delivered: bool) {
        let Some(entry) = self.group_sends.get_mut(&pending.id) else {
            return;
        };
        if delivered {
            entry.delivered += 1;
        }
        let (group, delivered, of) = (entry.group, entry.delivered, entry.of);
        if self.outbox.waiting_for(&pending.id) == 0 {
            self.group_sends.remove(&pending.id);
        }
        self.emit(Event::GroupDelivered {
            group,
            id: pending.id,
            delivered,
            of,
        });
    }

    /// Cancels queued group messages of `group` to peers no longer in it:
    /// a removed member is sent nothing more, not even what was still queued.
    fn cancel_sends_to_removed(&mut self, group: GroupId, before: &[PeerId], after: &[PeerId]) {
        for gone in before.iter().filter(|p| !after.contains(p) && **p != self.local) {
            for (id, to) in self.outbox.for_peer(gone) {
                let is_this_group = matches!(
                    self.store.get(&id).ok().flatten().map(|m| m.message.body().clone()),
                    Some(Body::Group(m)) if m.group == group
                );
                if is_this_group {
                    self.outbox.remove(&(id, to));
                    let _ = self.store.outbox_remove(&id, &to);
                    self.unflushed = true;
                }
            }
        }
    }

    /// The groups this node knows.
    pub(super) fn group_infos(&self) -> Vec<GroupInfo> {
        self.groups
            .all()
            .into_iter()
            .map(|g| GroupInfo {
                id: g.id,
                name: g.name.clone(),
                moderator: g.moderator,
                members: g.members(),
                version: g.version,
            })
            .collect()
    }
}

/// A group message this node sent, while receipts come in.
pub(crate) struct GroupSend {
    group: GroupId,
    of: usize,
    delivered: usize,
}
