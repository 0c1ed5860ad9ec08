//! Any bytes as the key file (`identity.key`, mode 0600) through
//! `Identity::load`, the exact path `backchannel run` takes: an identity or a
//! `Corrupt` error that leaves the file untouched, never a panic. A loaded
//! identity is consistent (its peer id is its signing key's, and what it
//! signs opens under that author) and saves to a file that loads as the same
//! identity.
//!
//! The files live in a directory under /dev/shm when it exists, so a run
//! measures parsing rather than the disk.

#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use backchannel::peer_id_of;
use backchannel::{Body, HallwayPost, Identity, IdentityError, Room, Signed};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("backchannel-fuzz-keyfile-{}", std::process::id()));
        fs::create_dir_all(dir.join("load")).expect("scratch dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch().join("load");
    let path = dir.join(Identity::KEY_FILE);
    fs::write(&path, data).expect("write key file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    match Identity::load(&dir) {
        Ok(identity) => {
            assert_eq!(peer_id_of(&identity.verifying_key()), identity.peer_id());
            let post = Body::Hallway(HallwayPost {
                room: Room::new("lobby").expect("a valid room"),
                text: "hi".into(),
                time_ms: 1,
                nick: None,
                clock: 1,
                reply_to: None,
                mentions: Vec::new(),
                question: false,
                stamp: None,
            });
            let signed = Signed::sign_with_nonce(&identity, post, [0; 16]);
            assert_eq!(
                Signed::open(signed.envelope()).map(|m| m.author()),
                Ok(identity.peer_id())
            );
            let saved = scratch().join("save");
            let _ = fs::remove_dir_all(&saved);
            identity.save(&saved).expect("save a loaded identity");
            let again = Identity::load(&saved).expect("load what was saved");
            assert_eq!(again.peer_id(), identity.peer_id());
            assert_eq!(again.verifying_key(), identity.verifying_key());
        }
        Err(IdentityError::Corrupt { .. }) => {}
        Err(e) => panic!("a private key file gave {e}"),
    }
    assert_eq!(
        fs::read(&path).expect("read key file"),
        data,
        "the key file was changed"
    );
});
