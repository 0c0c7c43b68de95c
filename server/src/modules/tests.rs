use super::*;

/// A valid empty core module carrying `body` in a custom section (so different bodies make
/// different, valid modules).
fn wasm(body: &[u8]) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.push(0); // custom section
    leb128(&mut bytes, body.len() + 2);
    bytes.extend_from_slice(&[1, b'x']); // its name, "x"
    bytes.extend_from_slice(body);
    bytes
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn open() -> (tempfile::TempDir, ModuleStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("state.redb")).expect("store");
    let modules = ModuleStore::open(&store).expect("module store");
    (dir, modules)
}

#[test]
fn a_pushed_module_resolves_by_tag_and_by_digest() {
    let (_dir, modules) = open();
    let bytes = wasm(b"hello");
    let record = modules.put("hello", "v1", &bytes).expect("put");
    assert_eq!(record.digest, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(record.size, bytes.len() as u64);
    let expected = Some(ModuleRef {
        digest: record.digest.clone(),
        size: record.size,
    });
    assert_eq!(modules.resolve("hello:v1").expect("resolve"), expected);
    assert_eq!(
        modules
            .resolve(&format!("sha256:{}", record.digest))
            .expect("resolve"),
        expected
    );
    assert_eq!(modules.resolve("hello").expect("resolve"), None);
    assert_eq!(modules.resolve("other:v1").expect("resolve"), None);
}

#[test]
fn a_bare_name_resolves_to_latest() {
    let (_dir, modules) = open();
    let record = modules.put("hello", "latest", &wasm(b"x")).expect("put");
    assert_eq!(
        modules.resolve("hello").expect("resolve").map(|m| m.digest),
        Some(record.digest)
    );
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    let (_dir, modules) = open();
    assert!(matches!(
        modules.put("hello", "v1", b"#!/bin/sh\necho hi"),
        Err(ModuleError::NotWasm)
    ));
    assert!(matches!(
        modules.put("hello", "v1", b"\0asm"),
        Err(ModuleError::NotWasm)
    ));
    assert!(modules.list().expect("list").is_empty());
}

#[test]
fn the_magic_followed_by_garbage_is_refused_with_the_validators_message() {
    let (_dir, modules) = open();
    let mut garbage = b"\0asm\x01\0\0\0".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let err = modules
        .put("hello", "v1", &garbage)
        .expect_err("garbage refused");
    assert!(matches!(err, ModuleError::Invalid(_)), "{err}");
    assert!(
        err.to_string().starts_with("invalid WebAssembly: "),
        "{err}"
    );
    // A component layer header with nothing valid after it is refused too.
    let err = modules
        .put("hello", "v1", b"\0asm\x0d\0\x01\0\xff\xff")
        .expect_err("broken component refused");
    assert!(matches!(err, ModuleError::Invalid(_)), "{err}");
    assert!(modules.list().expect("list").is_empty());
}

#[test]
fn an_empty_component_is_accepted() {
    let (_dir, modules) = open();
    modules
        .put("comp", "v1", b"\0asm\x0d\0\x01\0")
        .expect("an empty component is valid");
}

#[test]
fn features_the_agents_lack_are_refused() {
    // A module with one shared memory: needs `threads`, which the agents' wasmtime lacks.
    let (_dir, modules) = open();
    let shared = b"\0asm\x01\0\0\0\x05\x04\x01\x03\x01\x01";
    let err = modules.put("t", "v1", shared).expect_err("threads refused");
    assert!(matches!(err, ModuleError::Invalid(_)), "{err}");
}

#[test]
fn oversize_modules_are_refused() {
    let (_dir, modules) = open();
    let big = wasm(&vec![0; MAX_MODULE_SIZE]);
    assert!(matches!(
        modules.put("big", "v1", &big),
        Err(ModuleError::TooLarge { .. })
    ));
}

#[test]
fn invalid_names_and_tags_are_refused() {
    let (_dir, modules) = open();
    assert!(matches!(
        modules.put("Bad Name", "v1", &wasm(b"")),
        Err(ModuleError::InvalidName(_))
    ));
    assert!(matches!(
        modules.put("ok", "bad/tag", &wasm(b"")),
        Err(ModuleError::InvalidName(_))
    ));
}

#[test]
fn identical_content_is_stored_once_and_repushing_does_not_notify() {
    let (_dir, modules) = open();
    let mut changes = modules.subscribe();
    let bytes = wasm(b"same");
    let a = modules.put("a", "v1", &bytes).expect("put");
    assert!(changes.has_changed().expect("open"));
    changes.borrow_and_update();
    let b = modules.put("b", "v1", &bytes).expect("put");
    assert_eq!(a.digest, b.digest);
    assert!(
        changes.has_changed().expect("open"),
        "a new tag is a change"
    );
    changes.borrow_and_update();
    modules.put("b", "v1", &bytes).expect("put");
    assert!(!changes.has_changed().expect("open"), "a re-push is not");
    let listed = modules.list().expect("list");
    assert_eq!(listed, vec![a, b]);
}

#[test]
fn the_generation_grows_with_every_change_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    {
        let store = Store::open(&path).expect("store");
        let modules = ModuleStore::open(&store).expect("modules");
        assert_eq!(modules.generation().expect("generation"), 0);
        modules.put("a", "v1", &wasm(b"1")).expect("put");
        modules.put("a", "v1", &wasm(b"1")).expect("put");
        modules.put("a", "v2", &wasm(b"1")).expect("put");
        assert_eq!(modules.generation().expect("generation"), 2);
    }
    let store = Store::open(&path).expect("store");
    let modules = ModuleStore::open(&store).expect("modules");
    assert_eq!(modules.generation().expect("generation"), 2);
}

#[test]
fn moving_a_tag_points_it_at_the_new_content() {
    let (_dir, modules) = open();
    modules.put("app", "v1", &wasm(b"one")).expect("put");
    let two = modules.put("app", "v1", &wasm(b"two")).expect("put");
    assert_eq!(
        modules
            .resolve("app:v1")
            .expect("resolve")
            .map(|m| m.digest),
        Some(two.digest)
    );
    assert_eq!(modules.list().expect("list").len(), 1);
}

#[test]
fn chunks_cover_the_module_and_reassemble_to_it() {
    let (_dir, modules) = open();
    let body: Vec<u8> = (0..(2 * CHUNK_SIZE + 10))
        .map(|i| (i % 251) as u8)
        .collect();
    let bytes = wasm(&body);
    let record = modules.put("big", "v1", &bytes).expect("put");
    let first = modules
        .chunk(&record.digest, 0)
        .expect("chunk")
        .expect("exists");
    assert_eq!(first.total, 3);
    assert_eq!(first.size, bytes.len() as u64);
    assert_eq!(first.data.len(), CHUNK_SIZE);
    let last = modules
        .chunk(&record.digest, 2)
        .expect("chunk")
        .expect("exists");
    assert_eq!(last.data.len(), bytes.len() - 2 * CHUNK_SIZE);
    assert_eq!(modules.chunk(&record.digest, 3).expect("chunk"), None);
    assert_eq!(modules.chunk(&"00".repeat(32), 0).expect("chunk"), None);
    assert_eq!(modules.read(&record.digest).expect("read"), Some(bytes));
}

#[test]
fn modules_survive_reopening_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    let digest = {
        let store = Store::open(&path).expect("store");
        let modules = ModuleStore::open(&store).expect("modules");
        modules.put("keep", "v1", &wasm(b"k")).expect("put").digest
    };
    let store = Store::open(&path).expect("store");
    let modules = ModuleStore::open(&store).expect("modules");
    assert_eq!(
        modules
            .resolve("keep:v1")
            .expect("resolve")
            .map(|m| m.digest),
        Some(digest)
    );
}
