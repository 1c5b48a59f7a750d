//! tokio-hyper-peer: the hit counter written the way most async Rust services would be, as a peer
//! for bench/run to measure beside hitcore.
//!
//! `GET /` sends `INCR <key>` over one redis-rs multiplexed connection shared by every task (it
//! pipelines the commands of concurrent requests) and answers `200` with the new value as the
//! body; a Redis error answers `503`. Another path is `404`, another method `405`. Keep-alive
//! (HTTP/1.1, and HTTP/1.0 with `Connection: keep-alive` as `ab -k` sends) is hyper's default.
//!
//! Settings, each a flag, else an environment variable, else a default:
//!   -b, --bind HOST:PORT   env BIND             default 127.0.0.1:8000
//!   --redis URL            env REDIS_URL        default redis://127.0.0.1:6379/0 (env keeps a password out of `ps`)
//!   -t, --threads N        env WORKER_THREADS   default the CPUs this process may use
//!   --key NAME                                  default hit

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;

const USAGE: &str = "usage: tokio-hyper-peer [-b HOST:PORT] [--redis URL] [-t THREADS] [--key NAME]";

/// What the server was asked to do, after flags and environment are merged.
struct Config {
    bind: SocketAddr,
    redis_url: String,
    threads: usize,
    key: String,
}

fn parse_args() -> Result<Config, String> {
    let mut bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8000".into());
    let mut redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let mut threads = std::env::var("WORKER_THREADS").ok();
    let mut key = String::from("hit");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "-b" | "--bind" => bind = value()?,
            "--redis" => redis_url = value()?,
            "-t" | "--threads" => threads = Some(value()?),
            "--key" => key = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    let bind = bind.parse().map_err(|e| format!("--bind '{bind}': {e}"))?;
    let threads = match threads {
        Some(t) => t.parse().ok().filter(|&n| n > 0).ok_or(format!("--threads '{t}': expected a positive number"))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(Config { bind, redis_url, threads, key })
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("tokio-hyper-peer: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(config.threads).enable_all().build();
    match runtime.map_err(Into::into).and_then(|rt| rt.block_on(serve(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tokio-hyper-peer: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Connects to Redis once, then accepts forever; each connection is one task.
async fn serve(config: Config) -> Result<(), Box<dyn Error>> {
    let redis = redis::Client::open(config.redis_url.as_str())?.get_multiplexed_async_connection().await?;
    let listener = TcpListener::bind(config.bind).await?;
    eprintln!("tokio-hyper-peer: listening on http://{} with {} threads", listener.local_addr()?, config.threads);
    let key: Arc<str> = config.key.into();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically EMFILE under overload: back off briefly instead of spinning.
                eprintln!("tokio-hyper-peer: accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (redis, key) = (redis.clone(), key.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, redis.clone(), key.clone()));
            // Errors here are clients going away mid-request, normal under load tests.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    mut redis: MultiplexedConnection,
    key: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/" {
        return Ok(reply(StatusCode::NOT_FOUND, "not found\n".into()));
    }
    if request.method() != Method::GET {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into()));
    }
    let value: redis::RedisResult<i64> = redis::cmd("INCR").arg(&*key).query_async(&mut redis).await;
    Ok(match value {
        Ok(value) => reply(StatusCode::OK, value.to_string()),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "redis unavailable\n".into()),
    })
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain".parse().expect("a valid header value"));
    response
}
