//! The generated protobuf types. They stay private to the crate: bytes from
//! the network become domain types only through [`crate::message::Signed::open`].

#[allow(missing_docs, clippy::all)]
pub(crate) mod pb {
    include!(concat!(env!("OUT_DIR"), "/backchannel.v1.rs"));
}

#[allow(missing_docs, clippy::all)]
pub(crate) mod store_pb {
    include!(concat!(env!("OUT_DIR"), "/backchannel.store.v1.rs"));
}
