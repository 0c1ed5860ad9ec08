//! Cost per message of the pieces every post and DM goes through: sign and
//! encode, verify and decode, log (plaintext and sealed), flush.
//! `cargo bench --bench message`.

#![allow(missing_docs)]

use backchannel::seal::DataKey;
use backchannel::{Body, Direction, HallwayPost, Identity, Room, Signed, Store};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn post(identity: &Identity) -> Signed {
    Signed::sign(
        identity,
        Body::Hallway(HallwayPost {
            room: Room::new("lobby").expect("room"),
            text: "x".repeat(200),
            time_ms: 1_700_000_000_000,
            nick: Some("alice".into()),
            clock: 1_700_000_000_000,
            reply_to: None,
            mentions: Vec::new(),
            question: false,
            stamp: None,
        }),
    )
}

fn bench(c: &mut Criterion) {
    let alice = Identity::from_secret([1; 32]);
    let me = Identity::from_secret([2; 32]).peer_id();
    let signed = post(&alice);
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dir.path().join("log")).expect("store");
    // An encrypted data directory's log: every value sealed.
    let sealed = Store::open_sealed(&dir.path().join("sealed-log"), &DataKey::generate()).expect("sealed store");

    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_encode", |b| b.iter(|| post(&alice)));
    g.bench_function("verify_decode", |b| {
        b.iter(|| Signed::open(signed.envelope()).expect("valid"))
    });
    g.bench_function("log_insert", |b| {
        b.iter_batched(
            || post(&alice),
            |m| store.insert(&m, Direction::Received, &me).expect("insert"),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("log_insert_sealed", |b| {
        b.iter_batched(
            || post(&alice),
            |m| sealed.insert(&m, Direction::Received, &me).expect("insert"),
            criterion::BatchSize::SmallInput,
        )
    });
    // Sealing alone: one log record of this post (about 450 bytes).
    let key = DataKey::generate();
    let record = vec![7u8; 450];
    let place = [b'm'; 33];
    g.bench_function("seal_record", |b| b.iter(|| key.seal(&place, &record)));
    let closed = key.seal(&place, &record);
    g.bench_function("open_record", |b| b.iter(|| key.open(&place, &closed).expect("opens")));
    g.bench_function("log_read_sealed", |b| {
        let id = signed.id();
        sealed.insert(&signed, Direction::Received, &me).expect("insert");
        b.iter(|| sealed.get(&id).expect("read").expect("there"))
    });
    g.bench_function("log_read", |b| {
        let id = signed.id();
        store.insert(&signed, Direction::Received, &me).expect("insert");
        b.iter(|| store.get(&id).expect("read").expect("there"))
    });
    g.bench_function("log_insert_flush", |b| {
        b.iter_batched(
            || post(&alice),
            |m| {
                store.insert(&m, Direction::Received, &me).expect("insert");
                store.flush().expect("flush");
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // What a receiver pays per post with group commit (64 per flush).
    g.bench_function("sign_verify_log_flush64", |b| {
        let mut n = 0u64;
        b.iter(|| {
            let m = post(&alice);
            let opened = Signed::open(m.envelope()).expect("valid");
            store.insert(&opened, Direction::Received, &me).expect("insert");
            n += 1;
            if n.is_multiple_of(64) {
                store.flush().expect("flush");
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
