#!/usr/bin/env bash
# Test services on loopback: PostgreSQL (with the q3c extension), an S3 server (moto, from the venv), a throwaway
# sshd (its own config, host key, client key and known_hosts under $STATE/ssh; key-only login as the running user),
# a headless Chromium with its WebDriver for tests/browser (installed only: Debian's chromium, chromium-driver) and,
# as root, the test fleet of Debian 12 hosts (scripts/fleet.sh, under $STATE/fleet).
#   scripts/services.sh start   install if missing (Debian/Ubuntu, as root), start, write $STATE/env
#   scripts/services.sh stop
#   scripts/services.sh restart   restart PostgreSQL (fault tests)
# The env file holds ASTROLAB_TEST_PG_URL, ASTROLAB_TEST_S3_ENDPOINT, ASTROLAB_TEST_SSH_PORT / _KEY / _KNOWN_HOSTS
# and the fleet's ASTROLAB_TEST_FLEET (its inventory file) for the tests; `make test` sources it.
set -euo pipefail
STATE=${ASTROLAB_SERVICES_DIR:-/tmp/astrolab-services}
PGPORT=${ASTROLAB_TEST_PGPORT:-55432}
S3PORT=${ASTROLAB_TEST_S3PORT:-55900}
SSHPORT=${ASTROLAB_TEST_SSHPORT:-55922}
MOTO=${ASTROLAB_MOTO_SERVER:-$(dirname "$0")/../.venv/bin/moto_server}
FLEET_SH=$(dirname "$0")/fleet.sh
export ASTROLAB_TEST_FLEET_DIR=${ASTROLAB_TEST_FLEET_DIR:-$STATE/fleet}

as_postgres() {  # initdb and the server refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_postgres() {
  if [ -n "$(pg_bin)" ] && ls /usr/share/postgresql/*/extension/q3c.control >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL or q3c missing: sudo apt-get install postgresql postgresql-15-q3c" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ -n "$(pg_bin)" ] || apt-get install -y -qq postgresql >/dev/null
  version=$(basename "$(dirname "$(pg_bin)")")
  apt-get install -y -qq "postgresql-${version}-q3c" >/dev/null
}

install_restic() {  # the backup tests drive the real restic (Debian 12 ships 0.14)
  if command -v restic >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then echo "restic missing: sudo apt-get install restic" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq restic >/dev/null
}

install_browser() {  # the browser tests (tests/browser) drive a headless Chromium through its WebDriver
  if { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } &&
     command -v chromedriver >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then echo "chromium missing: sudo apt-get install chromium chromium-driver" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian names them chromium + chromium-driver; Ubuntu's chromium-browser package carries the driver
  apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || apt-get install -y -qq chromium-browser >/dev/null
}

start() {
  install_postgres
  install_restic
  install_browser
  local bin; bin=$(pg_bin)
  mkdir -p "$STATE"
  [ "$(id -u)" = 0 ] && chown postgres "$STATE"
  if [ ! -f "$STATE/pg/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$STATE/pg" -A trust -U astrolab >/dev/null
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$STATE/pg" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$STATE/pg" -l "$STATE/pg.log" -w \
      -o "-p $PGPORT -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  fi
  psql -h 127.0.0.1 -p "$PGPORT" -U astrolab -d postgres -qtc \
    "SELECT 1 FROM pg_database WHERE datname = 'astrolab_test'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$PGPORT" -U astrolab -d postgres -qc "CREATE DATABASE astrolab_test"
  start_s3
  start_sshd
  start_fleet
  { echo "ASTROLAB_TEST_PG_URL=postgresql://astrolab@127.0.0.1:$PGPORT/astrolab_test"
    echo "ASTROLAB_TEST_S3_ENDPOINT=http://127.0.0.1:$S3PORT"
    echo "ASTROLAB_TEST_SSH_PORT=$SSHPORT"
    echo "ASTROLAB_TEST_SSH_KEY=$STATE/ssh/client_ed25519"
    echo "ASTROLAB_TEST_SSH_KNOWN_HOSTS=$STATE/ssh/known_hosts"
    if [ -f "$ASTROLAB_TEST_FLEET_DIR/env" ]; then cat "$ASTROLAB_TEST_FLEET_DIR/env"; fi; } > "$STATE/env"
  echo "PostgreSQL $(basename "$(dirname "$bin")") with q3c on 127.0.0.1:$PGPORT; S3 (moto) on 127.0.0.1:$S3PORT;" \
    "sshd on 127.0.0.1:$SSHPORT"
}

s3_running() { [ -f "$STATE/s3.pid" ] && kill -0 "$(cat "$STATE/s3.pid")" 2>/dev/null; }

start_s3() {  # the moto S3 server, in the background, pid in $STATE/s3.pid
  if s3_running; then return; fi
  if [ ! -x "$MOTO" ]; then echo "no moto_server at $MOTO: make venv (moto[server] is a test dependency)" >&2; exit 1; fi
  "$MOTO" -H 127.0.0.1 -p "$S3PORT" >"$STATE/s3.log" 2>&1 &
  echo $! > "$STATE/s3.pid"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "the S3 server did not start on 127.0.0.1:$S3PORT (see $STATE/s3.log)" >&2; exit 1
}

stop_s3() {
  if s3_running; then kill "$(cat "$STATE/s3.pid")"; fi
  rm -f "$STATE/s3.pid"
}

install_sshd() {
  if [ -x /usr/sbin/sshd ]; then return; fi
  if [ "$(id -u)" != 0 ]; then echo "sshd missing: sudo apt-get install openssh-server" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
}

sshd_running() { [ -f "$STATE/ssh/sshd.pid" ] && kill -0 "$(cat "$STATE/ssh/sshd.pid")" 2>/dev/null; }

start_sshd() {  # a throwaway sshd on 127.0.0.1:$SSHPORT; everything it uses lives in $STATE/ssh
  install_sshd
  local dir=$STATE/ssh
  mkdir -p "$dir"
  chmod 700 "$dir"
  [ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C astrolab-test-host -f "$dir/host_ed25519"
  [ -f "$dir/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C astrolab-test-client -f "$dir/client_ed25519"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
  echo "[127.0.0.1]:$SSHPORT $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"
  # StrictModes no: $STATE belongs to postgres when run as root. sftp-server logs every request to sftp.log, so the
  # tests can check that a scan never writes.
  local sftp="internal-sftp"
  if [ -x /usr/lib/openssh/sftp-server ]; then sftp="/usr/lib/openssh/sftp-server -e -l INFO 2>>$dir/sftp.log"; fi
  printf '%s\n' "Port $SSHPORT" "ListenAddress 127.0.0.1" "HostKey $dir/host_ed25519" "PidFile $dir/sshd.pid" \
    "AuthorizedKeysFile $dir/authorized_keys" "AuthenticationMethods publickey" "PasswordAuthentication no" \
    "KbdInteractiveAuthentication no" "UsePAM no" "PermitRootLogin prohibit-password" "StrictModes no" \
    "AllowAgentForwarding no" "AllowTcpForwarding no" "X11Forwarding no" "PrintMotd no" "LogLevel VERBOSE" \
    "Subsystem sftp $sftp" > "$dir/sshd_config.new"
  if cmp -s "$dir/sshd_config.new" "$dir/sshd_config"; then rm "$dir/sshd_config.new"
  else
    mv "$dir/sshd_config.new" "$dir/sshd_config"
    if sshd_running; then /usr/sbin/sshd -t -f "$dir/sshd_config" && kill -HUP "$(cat "$dir/sshd.pid")"; fi
  fi
  if sshd_running; then return; fi
  if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi  # the privilege separation directory
  /usr/sbin/sshd -t -f "$dir/sshd_config"
  /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  for _ in $(seq 100); do
    if sshd_running && (exec 3<>"/dev/tcp/127.0.0.1/$SSHPORT") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "sshd did not start on 127.0.0.1:$SSHPORT (see $dir/sshd.log)" >&2; exit 1
}

stop_sshd() {
  if sshd_running; then kill "$(cat "$STATE/ssh/sshd.pid")"; fi
  rm -f "$STATE/ssh/sshd.pid"
}

start_fleet() {  # hosts in their own namespaces need root; without it the fleet's tests skip (fail under CI=true)
  if [ "$(id -u)" = 0 ]; then "$FLEET_SH" start
  else echo "test fleet not started: scripts/fleet.sh needs root (sudo scripts/fleet.sh start)" >&2; fi
}

stop() {
  if [ "$(id -u)" = 0 ]; then "$FLEET_SH" stop; fi
  stop_sshd
  stop_s3
  local bin; bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$STATE/pg/PG_VERSION" ]; then
    as_postgres "$bin/pg_ctl" -D "$STATE/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

restart() {  # used by the fault tests: a real server restart under an open connection
  as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/pg" -m fast -w restart >/dev/null
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  *) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
