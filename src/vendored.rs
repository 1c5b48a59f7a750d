//! Test builds only: runs the unit tests of hitcore's own code in the vendored glommio
//! (`vendor/glommio`, its patch series) that glommio's test target cannot, because the vendored
//! copy leaves out the dev-dependencies its other tests need. Today that is patch 10's buffer-ring
//! bookkeeping (`vendor/glommio/src/sys/buf_ring.rs`, compiled here a second time, on its own).
//! It must hold no code of its own and nothing outside `#[cfg(test)]`.

#[rustfmt::skip]
#[allow(dead_code, unreachable_pub, clippy::all, clippy::pedantic, clippy::nursery)]
#[path = "../vendor/glommio/src/sys/buf_ring.rs"]
mod glommio_buf_ring;
