//! Redis Cluster (`redis+cluster://`): the pure routing facts (`slots`), finding the owner of the
//! key's slot at every connect (`discovery`), the `-MOVED` bookkeeping of a session (`moves`) and
//! the batches a migrating slot's owner redirects with `-ASK` (`ask`), and the counting API's
//! routing of each key to its slot's owner (`router`).
//!
//! Nothing here completes a request: `ask` says what became of a batch ([`ask::Asked`]) and the
//! queue hands the outcomes out.

pub mod ask;
pub mod discovery;
pub mod moves;
pub mod router;
pub mod slots;
