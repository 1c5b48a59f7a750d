# Sourced by scripts/serve, scripts/test and .ci/run: what a fresh Debian (12 or later) or Ubuntu
# machine lacks before hitcore builds and its tests run, installed from the distribution's packages,
# or one line saying what to install and how where that cannot be done (no Rust toolchain, no
# apt-get). It owns the command -> Debian package table and the toolchain check; it must not start
# anything: no package it installs runs a daemon for the tests (Debian's `prometheus` package would
# start a Prometheus server on :9090 and node_exporter on :9100, so only its promtool binary is
# extracted, into target/tools/bin, never installed).

# prereqs_rust: stops at once, with one line, when no Rust toolchain can build hitcore. rustup reads
# rust-toolchain.toml and installs the pinned release itself; a distribution's rustc (Debian 12's
# is 1.63) cannot build edition 2024.
prereqs_rust() {
  local pinned
  pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
  if ! command -v cargo >/dev/null 2>&1; then
    echo "$(basename "$0"): no Rust toolchain: install rustup (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain none, then . ~/.cargo/env) and rerun; rust-toolchain.toml pins Rust $pinned" >&2
    exit 1
  fi
  if ! command -v rustup >/dev/null 2>&1; then
    local have
    have=$(rustc --version 2>/dev/null | awk '{print $2}')
    if [[ $(printf '%s\n%s\n' "$pinned" "$have" | sort -V | head -1) != "$pinned" ]]; then
      echo "$(basename "$0"): rustc $have is older than the Rust $pinned hitcore needs (edition 2024): remove the distribution's rustc/cargo and install rustup (https://rustup.rs), which reads rust-toolchain.toml" >&2
      exit 1
    fi
  fi
}

# prereqs_apt COMMAND=PACKAGE...: installs the Debian packages of the commands that are missing,
# without their recommends, in one apt-get run (sudo when not root).
prereqs_apt() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
  done
  # The C compiler's headers: liburing, mimalloc and ring compile C.
  if [[ " $* " == *" cc="* ]] && [[ ! -e /usr/include/stdio.h ]]; then missing+=(libc6-dev); fi
  ((${#missing[@]})) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$(basename "$0"): missing ${missing[*]} (Debian package names): install them with your package manager and rerun" >&2
    exit 1
  fi
  local sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "$(basename "$0"): missing ${missing[*]}: run as root: apt-get install --no-install-recommends ${missing[*]}" >&2
      exit 1
    }
    sudo_cmd=(sudo)
  fi
  echo "$(basename "$0"): installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building hitcore needs: a C compiler (liburing, mimalloc, ring), pkg-config, git (scripts/vendor-glommio).
PREREQS_BUILD=(cc=gcc pkg-config=pkg-config git=git)
# What the tests need besides: python3 (the bench kit's tests), Redis's binaries from redis-tools
# (not the redis-server package, which starts a Redis service on :6379: see prereqs_redis_server),
# curl, strace and systemd-analyze (scripts/check-units), systemd-socket-activate
# (tests/it/binds.rs), man (scripts/check-deb), openssl (tests/it/https.rs: s_client for versions and
# resumption), chromium (tests/it/api_browser.rs: a real browser calls the counting API).
PREREQS_TEST=(python3=python3 redis-check-rdb=redis-tools redis-cli=redis-tools curl=curl strace=strace
  systemd-analyze=systemd systemd-socket-activate=systemd man=man-db openssl=openssl chromium=chromium)

# prereqs_redis_server: a `redis-server` for the tests without a Redis service. Debian's
# redis-server package only adds the service (started on install, listening on :6379) and a link:
# its /usr/bin/redis-server is redis-tools' multi-call binary, which serves when called by that
# name. So the link is made in target/tools/bin instead. Nothing when redis-server is on PATH.
prereqs_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  mkdir -p target/tools/bin
  ln -sf "$(command -v redis-check-rdb)" target/tools/bin/redis-server
}

# prereqs_promtool: target/tools/bin/promtool, the Prometheus text-format checker
# tests/it/observability.rs runs, taken out of Debian's prometheus package without installing it (so
# no Prometheus server or node_exporter is started). Nothing when a promtool is already on PATH.
prereqs_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  [[ -x target/tools/bin/promtool ]] && return 0
  local work
  work=$(mktemp -d)
  chmod 755 "$work" # apt-get downloads as the _apt user when it can
  echo "$(basename "$0"): extracting promtool from Debian's prometheus package (not installed)" >&2
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && apt-get download prometheus >/dev/null)
  }
  mkdir -p target/tools/bin
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
  mv "$work/usr/bin/promtool" target/tools/bin/promtool
  rm -rf "$work"
}
