//! The integration tests, one binary: the shared harness (`common` and the helpers beside it) is
//! compiled once, and each behaviour keeps its own module (one file each, as before).

mod common;
mod fault;
mod install;
mod notify_socket;

mod api;
mod api_browser;
mod api_https;
mod api_topologies;
mod api_ttl;
mod binds;
mod cli;
mod cluster;
mod config;
mod counter;
mod fault_schedule;
mod first_hour;
mod gunicorn_habits;
mod handoff;
mod hostile;
mod http;
mod https;
mod hup_stress;
mod lifecycle;
mod limits;
mod log_json_props;
mod multishot;
mod notify;
mod observability;
mod packaging;
mod parse_props;
mod placement;
mod redis;
mod redis_hosts;
mod redis_primary;
mod redis_tls;
mod redis_wait;
mod reload;
mod sentinel;
mod supervisor;
mod topology_harness;
mod upgrade;
