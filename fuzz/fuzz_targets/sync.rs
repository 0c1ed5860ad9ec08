//! History sync, where a peer's bytes enter: any negentropy message to the
//! responder and to an initiator mid-reconciliation is an answer or an error,
//! never a panic, and the initiator never reports more differences than the
//! bound; and a page of envelopes opened as a page gives exactly what
//! opening each one alone gives (a page may not accept what `verify_strict`
//! rejects, nor the reverse).

#![no_main]

use arbitrary::Arbitrary;
use backchannel::fuzzing::{MAX_TRANSFER_IDS, Reconciler, respond};
use backchannel::{MessageId, Signed};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The local history set: (clock, id seed).
    mine: Vec<(u16, u8)>,
    /// What the peer sends as a responder's answer and as a query.
    answers: Vec<Vec<u8>>,
    /// A page of envelopes.
    page: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let keys: Vec<(u64, MessageId)> = input
        .mine
        .iter()
        .take(500)
        .map(|(clock, seed)| (u64::from(*clock), MessageId::from_bytes([*seed; 32])))
        .collect();
    for query in input.answers.iter().take(8) {
        let _ = respond(&keys, query);
    }
    if let Ok((mut reconciler, _first)) = Reconciler::start(&keys) {
        for answer in input.answers.iter().take(40) {
            match reconciler.step(answer) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert!(reconciler.have.len() + reconciler.need.len() <= 2 * MAX_TRANSFER_IDS + 2 * 60_000);
    }
    let page: Vec<Vec<u8>> = input.page.into_iter().take(64).collect();
    let batch = Signed::open_batch(&page);
    assert_eq!(batch.len(), page.len());
    for (bytes, got) in page.iter().zip(batch) {
        assert_eq!(got, Signed::open(bytes), "batch and single verification agree");
    }
});
