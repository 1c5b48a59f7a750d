//! tokio-hyper-peer: the hit counter written the way most async Rust services would be, as a peer
//! for bench/run to measure beside hitcore.
//!
//! `GET /` sends `INCR <key>` over one redis-rs multiplexed connection shared by every task (it
//! pipelines the commands of concurrent requests) and answers `200` with the new value as the
//! body; a Redis error answers `503`. Another path is `404`, another method `405`. Keep-alive
//! (HTTP/1.1, and HTTP/1.0 with `Connection: keep-alive` as `ab -k` sends) is hyper's default.
//!
//! The counting API's two read/count routes, as Abacus shapes them (bench plan `api`), written
//! as such a service would: one pipelined round trip per request, no coalescing across requests.
//! `GET /hit/{namespace}/{key}` (`/hit/{key}`: namespace `default`) sends `INCR K:{ns}:{key}` and
//! `EXPIRE K:{ns}:{key} TTL` together and answers `{"value":N}`; `GET /get/...` sends `GET` and
//! `EXPIRE` (Abacus refreshes the TTL on reads too) and answers `{"value":N}`, or `404`
//! `{"error":"Key not found"}`. A name outside `[A-Za-z0-9_.-]{3,64}` is `400`.
//!
//! Settings, each a flag, else an environment variable, else a default:
//!   -b, --bind HOST:PORT   env BIND             default 127.0.0.1:8000
//!   --redis URL            env REDIS_URL        default redis://127.0.0.1:6379/0 (env keeps a password out of `ps`)
//!   -t, --threads N        env WORKER_THREADS   default the CPUs this process may use
//!   --key NAME                                  default hit
//!   --ttl SECS             env COUNTER_TTL      default 15552000 (180 days, Abacus's six months)
//!   --tls-cert FILE --tls-key FILE              HTTPS (rustls, ALPN http/1.1) with this PEM pair; default plain HTTP

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

const USAGE: &str = "usage: tokio-hyper-peer [-b HOST:PORT] [--redis URL] [-t THREADS] [--key NAME] [--ttl SECS] \
                     [--tls-cert FILE --tls-key FILE]";

/// What the server was asked to do, after flags and environment are merged.
struct Config {
    bind: SocketAddr,
    redis_url: String,
    threads: usize,
    key: String,
    ttl: u64,
    /// The certificate chain and key files, for HTTPS.
    tls: Option<(String, String)>,
}

fn parse_args() -> Result<Config, String> {
    let mut bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8000".into());
    let mut redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let mut threads = std::env::var("WORKER_THREADS").ok();
    let mut key = String::from("hit");
    let mut ttl = std::env::var("COUNTER_TTL").unwrap_or_else(|_| "15552000".into());
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "-b" | "--bind" => bind = value()?,
            "--redis" => redis_url = value()?,
            "-t" | "--threads" => threads = Some(value()?),
            "--key" => key = value()?,
            "--ttl" => ttl = value()?,
            "--tls-cert" => tls_cert = Some(value()?),
            "--tls-key" => tls_key = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    let bind = bind.parse().map_err(|e| format!("--bind '{bind}': {e}"))?;
    let threads = match threads {
        Some(t) => t.parse().ok().filter(|&n| n > 0).ok_or(format!("--threads '{t}': expected a positive number"))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let ttl = ttl.parse().ok().filter(|&n| n > 0).ok_or(format!("--ttl '{ttl}': expected a positive number"))?;
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(format!("--tls-cert and --tls-key go together\n{USAGE}")),
    };
    Ok(Config { bind, redis_url, threads, key, ttl, tls })
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
    let tls = config.tls.as_ref().map(|(cert, key)| acceptor(cert, key)).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("tokio-hyper-peer: listening on {scheme}://{} with {} threads", listener.local_addr()?, config.threads);
    let key: Arc<str> = config.key.into();
    let ttl = config.ttl;
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
        let (redis, key, tls) = (redis.clone(), key.clone(), tls.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, redis.clone(), key.clone(), ttl));
            // Errors here are clients going away mid-request (or mid-handshake), normal under load tests.
            match tls {
                None => {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                }
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}

/// The rustls acceptor for a PEM certificate chain and key, as most tokio services set it up:
/// TLS 1.2 and 1.3, ALPN http/1.1, rustls's default session cache and tickets.
fn acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, Box<dyn Error>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ServerConfig, crypto::ring};
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    // The only provider compiled in (ring), as the default builder picks it.
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = ring::Ticketer::new()?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn handle(
    request: Request<Incoming>,
    mut redis: MultiplexedConnection,
    key: Arc<str>,
    ttl: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = route(request.uri().path());
    if matches!(route, Route::NotFound) {
        return Ok(reply(StatusCode::NOT_FOUND, "not found\n".into()));
    }
    if request.method() != Method::GET {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into()));
    }
    let (counting, namespace, name) = match route {
        Route::Root => return Ok(root(redis, &key).await),
        Route::BadName => return Ok(json(StatusCode::BAD_REQUEST, r#"{"error":"Invalid namespace/key"}"#.into())),
        Route::Hit(namespace, name) => (true, namespace, name),
        Route::Get(namespace, name) => (false, namespace, name),
        Route::NotFound => unreachable!("answered above"),
    };
    let counter = format!("K:{namespace}:{name}");
    let mut pipe = redis::pipe();
    pipe.cmd(if counting { "INCR" } else { "GET" }).arg(&counter).cmd("EXPIRE").arg(&counter).arg(ttl).ignore();
    let value: redis::RedisResult<(Option<i64>,)> = pipe.query_async(&mut redis).await;
    Ok(match value {
        Ok((Some(value),)) => json(StatusCode::OK, format!(r#"{{"value":{value}}}"#)),
        Ok((None,)) => json(StatusCode::NOT_FOUND, r#"{"error":"Key not found"}"#.into()),
        Err(_) => json(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"redis unavailable"}"#.into()),
    })
}

/// What a path asks for.
enum Route<'a> {
    /// `/`: the seed's counter.
    Root,
    /// `/hit/...`: count, then answer the value.
    Hit(&'a str, &'a str),
    /// `/get/...`: the value without counting.
    Get(&'a str, &'a str),
    /// An API route whose namespace or key is not a valid name.
    BadName,
    /// Anything else.
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    if path == "/" {
        return Route::Root;
    }
    let (counting, rest) = match (path.strip_prefix("/hit/"), path.strip_prefix("/get/")) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => return Route::NotFound,
    };
    let (namespace, name) = match rest.split_once('/') {
        None => ("default", rest),
        Some((namespace, name)) if !name.contains('/') => (namespace, name),
        Some(_) => return Route::NotFound,
    };
    let valid =
        |s: &str| (3..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    match (valid(namespace) && valid(name), counting) {
        (false, _) => Route::BadName,
        (true, true) => Route::Hit(namespace, name),
        (true, false) => Route::Get(namespace, name),
    }
}

async fn root(mut redis: MultiplexedConnection, key: &str) -> Response<Full<Bytes>> {
    let value: redis::RedisResult<i64> = redis::cmd("INCR").arg(key).query_async(&mut redis).await;
    match value {
        Ok(value) => reply(StatusCode::OK, value.to_string()),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "redis unavailable\n".into()),
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = reply(status, body);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("a valid header value"));
    response
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain".parse().expect("a valid header value"));
    response
}
