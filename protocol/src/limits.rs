//! Limits of the HTTPS API that both the server and its clients (the `wasmfleet` CLI) need,
//! so they have one home.

/// The largest object body (POST, PUT, PATCH) the API accepts, in bytes. The server answers
/// 413 beyond it; the CLI refuses such an object before sending it.
pub const MAX_OBJECT_BODY: usize = 1 << 20;
