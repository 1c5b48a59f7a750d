//! Redis Cluster (`redis+cluster://`): the pure routing facts (`slots`), finding the owner of the
//! key's slot at every connect (`discovery`), the `-MOVED` bookkeeping of a session (`moves`) and
//! the batches a migrating slot's owner redirects with `-ASK` (`ask`).
//!
//! Nothing here completes a request: `ask` says what became of a batch ([`ask::Asked`]) and the
//! queue hands the outcomes out.

pub mod ask;
pub mod discovery;
pub mod moves;
pub mod slots;
