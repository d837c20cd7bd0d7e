#!/usr/bin/env bash
# A test fleet: $FLEET_SIZE Debian 12 hosts on this machine, each its own root filesystem running its own sshd on a
# loopback port, for the tests of the compliance scans, the backups and the cluster build (real SSH, real Ansible).
#   scripts/fleet.sh start    build the rootfs if not cached (debootstrap, a minute or more), give each host its own
#                             copy-on-write view of it, start the hosts (seconds); a running host is left as it is
#   scripts/fleet.sh stop     stop the hosts and remove what they wrote
#   scripts/fleet.sh status   one line per host; exit 1 if one is down
#   scripts/fleet.sh reset H  give host H (fleet1...) back its pristine root filesystem (same name, port, host key):
#                             tests that apply roles to a host call it after, so the hosts' other tests see none of it
# The env file $FLEET/env holds ASTROLAB_TEST_FLEET=$FLEET/fleet.yaml, an astrolab inventory of the hosts (address, port,
# user, key, known_hosts with their verified host keys); `make test` sources it.
#
# Isolation: each host is a chroot inside its own mount, PID, UTS and IPC namespaces (util-linux `unshare`), with its
# own /proc (it sees only its own processes), a private /dev (a few device nodes, its own devpts) and its own hostname.
# Why this and not systemd-nspawn or podman: unshare works here as root with nothing to install and starts in
# milliseconds; nspawn wants a systemd host (the CI machine runs none as PID 1) and podman would add a container
# runtime, its storage and an image import for the same result. The network namespace is shared (sshd binds its own
# 127.0.0.1 port), so the tests reach the hosts without a bridge or veth pairs.
set -euo pipefail
STATE=${ASTROLAB_SERVICES_DIR:-/tmp/astrolab-services}
FLEET=${ASTROLAB_TEST_FLEET_DIR:-$STATE/fleet}
SIZE=${FLEET_SIZE:-3}
BASEPORT=${ASTROLAB_TEST_FLEET_PORT:-56022}
CACHE=${ASTROLAB_TEST_FLEET_CACHE:-/var/cache/astrolab/fleet}
MIRROR=${ASTROLAB_TEST_FLEET_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What Ansible (python3, python3-apt for its apt module, sudo) and the compliance scans (sshd -T, sysctl, ps, ip) need.
PACKAGES=openssh-server,python3,python3-apt,sudo,procps,iproute2
# What the Ansible roles the fleet converges (infra/ansible: base, hardening, nfs_*, postgresql, backup_client)
# install, downloaded into the image's apt cache (not installed): an apply installs them through the roles without waiting on the mirror.
PREFETCH="chrony unattended-upgrades ca-certificates auditd audispd-plugins libpam-pwquality rsyslog nftables
  nfs-common nfs-kernel-server postgresql-15 postgresql-15-q3c python3-psycopg2 acl tzdata restic"
KEY=$(printf '%s\n' "$SUITE" minbase "$PACKAGES" "$PREFETCH" "$MIRROR" fleet-rootfs-v3 | sha256sum | cut -c1-12)
TARBALL=$CACHE/debian12-rootfs-$KEY.tar.zst
BASE=$CACHE/debian12-rootfs-$KEY  # the tarball unpacked once: the hosts' shared, read-only lower layer

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "scripts/fleet.sh needs root (debootstrap, chroot, namespaces)" >&2; exit 1; fi
}

install_debootstrap() {
  if command -v debootstrap >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1; then return; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq debootstrap zstd >/dev/null
}

build_rootfs() {  # once per package list: debootstrap into a scratch dir, add the users, pack as $TARBALL
  if [ -f "$TARBALL" ]; then return; fi
  install_debootstrap
  mkdir -p "$CACHE"
  local work; work=$(mktemp -d "$CACHE/build.XXXXXX")
  local root=$work/root
  echo "building the fleet rootfs (debootstrap $SUITE, once; cached as $TARBALL)"
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1
  then
    echo "debootstrap failed (see $work/debootstrap.log)" >&2; exit 1
  fi
  # Every host gets its own host keys at start; none may come from the shared image.
  rm -f "$root"/etc/ssh/ssh_host_*
  rm -rf "$root"/var/cache/apt/archives/*.deb
  # shellcheck disable=SC2086
  if ! { chroot "$root" apt-get update -qq && chroot "$root" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -qq -y --no-install-recommends --download-only $PREFETCH; } >>"$work/debootstrap.log" 2>&1; then
    echo "downloading the roles' packages failed (see $work/debootstrap.log)" >&2; exit 1
  fi
  # astrolab: the unprivileged admin Ansible logs in as, with passwordless sudo. Password '*' (none can match) rather
  # than useradd's '!', which sshd without PAM takes for a locked account and refuses even with a key.
  chroot "$root" useradd --create-home --shell /bin/bash --password '*' astrolab
  echo 'astrolab ALL=(ALL:ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/astrolab"
  chmod 0440 "$root/etc/sudoers.d/astrolab"
  tar -C "$root" --numeric-owner --xattrs -cf - . | zstd -q -T0 -o "$work/rootfs.tar.zst"
  mv "$work/rootfs.tar.zst" "$TARBALL"  # atomic: a half-built image is never cached
  rm -rf "$work"
  find "$CACHE" -maxdepth 1 -name 'debian12-rootfs-*.tar.zst' ! -name "$(basename "$TARBALL")" -delete
}

unpack_rootfs() {  # $BASE from $TARBALL, once; an older image's unpacked copy is removed
  if [ -d "$BASE" ]; then return; fi
  local work; work=$(mktemp -d "$CACHE/unpack.XXXXXX")
  zstd -dc "$TARBALL" | tar -C "$work" --numeric-owner --xattrs -xf -
  chmod 755 "$work"
  mv "$work" "$BASE"
  find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name 'debian12-rootfs-*' ! -name "$(basename "$BASE")" \
    -exec rm -rf {} +
}

host_name() { echo "fleet$1"; }
host_port() { echo $((BASEPORT + $1 - 1)); }
running() { [ -f "$FLEET/$1/pid" ] && kill -0 "$(cat "$FLEET/$1/pid")" 2>/dev/null; }

# Run inside the host's new namespaces by `unshare` (as PID 1 there, exec'd into sshd). The host's root is an
# overlay: its own few files (layer) over the shared, never-written base image, its writes in its own upper dir, so a
# "copy" per host costs no extraction and no disk. Then its own /proc, a private /dev and /run, its hostname, and
# sshd chrooted into that root. Every mount here lives in the host's mount namespace only and goes away with it.
# shellcheck disable=SC2016
INSIDE='set -e
name=$1 dir=$2 base=$3
root=$dir/root
mount -t overlay -o "lowerdir=$dir/layer:$base,upperdir=$dir/upper,workdir=$dir/work" overlay "$root"
hostname "$name"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o mode=755,nosuid,size=1m dev "$root/dev"
set -- null 1 3 zero 1 5 full 1 7 random 1 8 urandom 1 9 tty 5 0
while [ $# -gt 0 ]; do mknod -m 666 "$root/dev/$1" c "$2" "$3"; shift 3; done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev run "$root/run"
mkdir -m 755 "$root/run/sshd"
chroot "$root" /usr/sbin/sshd -t
exec chroot "$root" /usr/sbin/sshd -D -e'

layer_dir() {  # layer_dir LAYER PATH: PATH as a directory of LAYER with the base image's owner and mode at each level
  local layer=$1 path=$2 part=""
  local piece
  for piece in ${path//\// }; do
    part=$part/$piece
    mkdir -p "$layer$part"
    chown --reference="$BASE$part" "$layer$part"
    chmod --reference="$BASE$part" "$layer$part"
  done
}

prepare_host() {  # this host's layer: its name, host key, sshd settings and authorized keys; empty upper and work dirs
  local name=$1 port=$2 dir=$FLEET/$1
  local layer=$dir/layer
  rm -rf "$dir"
  mkdir -p "$dir/root" "$dir/upper" "$dir/work"
  layer_dir "$layer" etc/ssh/sshd_config.d
  echo "$name" > "$layer/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$name" > "$layer/etc/hosts"
  ssh-keygen -q -t ed25519 -N "" -C "root@$name" -f "$layer/etc/ssh/ssh_host_ed25519_key"
  # Read before sshd_config's own settings (the first value of a keyword wins). UsePAM no: PAM's session modules
  # (loginuid, systemd) expect a booted system.
  printf '%s\n' "Port $port" "ListenAddress 127.0.0.1" "HostKey /etc/ssh/ssh_host_ed25519_key" \
    "PermitRootLogin prohibit-password" "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
    "AuthenticationMethods publickey" "UsePAM no" "PidFile /run/sshd.pid" > "$layer/etc/ssh/sshd_config.d/fleet.conf"
  local home owner
  for home in root home/astrolab; do
    layer_dir "$layer" "$home"
    owner=$(stat -c %u:%g "$BASE/$home")
    install -d -m 700 -o "${owner%:*}" -g "${owner#*:}" "$layer/$home/.ssh"
    install -m 600 -o "${owner%:*}" -g "${owner#*:}" "$FLEET/client_ed25519.pub" "$layer/$home/.ssh/authorized_keys"
  done
}

start_host() {  # the host's namespaces and sshd, in the background
  local i=$1 name port
  name=$(host_name "$i"); port=$(host_port "$i")
  if running "$name"; then return; fi
  prepare_host "$name" "$port"
  launch_host "$name"
}

launch_host() {  # unshare and the host's PID 1 over its prepared layer and base image (as recorded in $dir/base)
  local name=$1 dir=$FLEET/$1 base
  [ -f "$dir/base" ] || echo "$BASE" > "$dir/base"
  base=$(cat "$dir/base")
  # --kill-child: should unshare be killed, its child, PID 1 of the host, is killed, and with it every process in the
  # host's PID namespace.
  setsid unshare --mount --pid --uts --ipc --fork --kill-child -- /bin/sh -c "$INSIDE" sh "$name" "$dir" "$base" \
    </dev/null >"$dir/sshd.log" 2>&1 &
  echo $! > "$dir/pid"
}

login() {  # login HOST PORT USER COMMAND...: over SSH with the fleet key, the host key checked
  local port=$2 user=$3; shift 3
  ssh -q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$FLEET/known_hosts" \
    -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=5 -i "$FLEET/client_ed25519" -p "$port" \
    "$user@127.0.0.1" "$@"
}

wait_host() {
  local i=$1 name port
  name=$(host_name "$i"); port=$(host_port "$i")
  for _ in $(seq 300); do
    if ! running "$name"; then break; fi
    if [ "$(login "$name" "$port" root hostname 2>/dev/null)" = "$name" ]; then return; fi
    sleep 0.1
  done
  echo "fleet host $name did not come up on 127.0.0.1:$port (see $FLEET/$name/sshd.log)" >&2; exit 1
}

write_known_hosts() {  # each host's key, as generated here: the hosts' own word is never taken for it
  local i name port
  : > "$FLEET/known_hosts.new"
  for i in $(seq "$SIZE"); do
    name=$(host_name "$i"); port=$(host_port "$i")
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$FLEET/$name/layer/etc/ssh/ssh_host_ed25519_key.pub")" \
      >> "$FLEET/known_hosts.new"
  done
  mv "$FLEET/known_hosts.new" "$FLEET/known_hosts"
}

write_inventory() {  # fleet.yaml (an astrolab inventory) and the env file, once every host is up
  local i name port
  { echo "# The test fleet (scripts/fleet.sh): Debian 12 hosts on this machine, sshd on loopback ports."
    echo "# Root logs in with the key; so does astrolab, which has passwordless sudo."
    echo "cluster: astrolab-fleet"
    echo "defaults:"
    echo "  ssh: {user: root, key: $FLEET/client_ed25519, known_hosts: $FLEET/known_hosts}"
    echo "nodes:"
    for i in $(seq "$SIZE"); do
      name=$(host_name "$i"); port=$(host_port "$i")
      echo "  - {name: $name, address: 127.0.0.1, ssh: {user: root, port: $port, key: $FLEET/client_ed25519," \
        "known_hosts: $FLEET/known_hosts}}"
    done; } > "$FLEET/fleet.yaml.new"
  mv "$FLEET/fleet.yaml.new" "$FLEET/fleet.yaml"
  { echo "ASTROLAB_TEST_FLEET=$FLEET/fleet.yaml"
    echo "ASTROLAB_TEST_FLEET_SUDO_USER=astrolab"; } > "$FLEET/env"
}

start() {
  need_root
  build_rootfs
  unpack_rootfs
  mkdir -p "$FLEET"
  chmod 700 "$FLEET"
  [ -f "$FLEET/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C astrolab-fleet-client -f "$FLEET/client_ed25519"
  local i
  for i in $(seq "$SIZE"); do start_host "$i"; done
  write_known_hosts
  for i in $(seq "$SIZE"); do wait_host "$i"; done
  write_inventory
  echo "fleet: $SIZE Debian 12 hosts on 127.0.0.1:$(host_port 1)-$(host_port "$SIZE"); inventory $FLEET/fleet.yaml"
}

signal_host() {  # TERM to the host's PID 1 (its sshd); its end takes the whole namespace down
  local init; init=$(pgrep -P "$(cat "$FLEET/$1/pid")" || true)
  # Not to unshare itself: it ignores TERM while it waits for its child.
  if [ -n "$init" ]; then kill "$init" 2>/dev/null || true; fi
}

wait_stopped() {  # until unshare has reaped the host (the namespaces' teardown takes about a second); KILL if it hangs
  local pid; pid=$(cat "$FLEET/$1/pid")
  for _ in $(seq 100); do running "$1" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true  # --kill-child: the host's PID 1 gets KILL too
  for _ in $(seq 100); do running "$1" || return 0; sleep 0.1; done
  echo "fleet host $1 (unshare pid $pid) did not stop" >&2; exit 1
}

reset() {  # reset HOST: stop it, drop what it wrote (its upper dir), start it again on the same layer
  local name=$1 i
  case $name in fleet[0-9]*) ;; *) echo "not a fleet host: $name" >&2; exit 2 ;; esac
  i=${name#fleet}
  if [ ! -d "$FLEET/$name/layer" ]; then echo "fleet host $name was never started" >&2; exit 1; fi
  if running "$name"; then signal_host "$name"; wait_stopped "$name"; fi
  if findmnt -rn -o TARGET | grep -q "^$FLEET/$name/"; then
    echo "fleet host $name: something is still mounted under $FLEET/$name; not resetting it" >&2; exit 1
  fi
  # A host started before its base image was recorded: the one unpacked image there is (a reset keeps the image the
  # host started from, even when this script would now build another).
  if [ ! -f "$FLEET/$name/base" ]; then
    local images; images=$(find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name 'debian12-rootfs-*')
    if [ "$(echo "$images" | grep -c .)" != 1 ]; then echo "fleet host $name: base image unknown" >&2; exit 1; fi
    echo "$images" > "$FLEET/$name/base"
  fi
  rm -rf "${FLEET:?}/$name/upper" "${FLEET:?}/$name/work"
  mkdir -p "$FLEET/$name/upper" "$FLEET/$name/work"
  launch_host "$name"
  wait_host "$i"
}

stop() {  # every host directory under $FLEET, whatever FLEET_SIZE was when it started; all at once
  local dir name
  for dir in "$FLEET"/*/; do
    name=$(basename "$dir")
    if [ -d "$dir/layer" ] && running "$name"; then signal_host "$name"; fi
  done
  for dir in "$FLEET"/*/; do
    [ -d "$dir/layer" ] || continue
    name=$(basename "$dir")
    if running "$name"; then wait_stopped "$name"; fi
    # The host's mounts lived in its own namespace; refuse to delete through one that is somehow visible here.
    if findmnt -rn -o TARGET | grep -q "^${dir%/}/"; then
      echo "fleet host $name: something is still mounted under $dir; not removing it" >&2; exit 1
    fi
    rm -rf "$dir"
  done
  rm -f "$FLEET/env" "$FLEET/fleet.yaml" "$FLEET/known_hosts"
}

status() {
  local i name port down=0
  for i in $(seq "$SIZE"); do
    name=$(host_name "$i"); port=$(host_port "$i")
    if running "$name" && [ "$(login "$name" "$port" root hostname 2>/dev/null)" = "$name" ]; then
      echo "$name 127.0.0.1:$port up"
    else
      echo "$name 127.0.0.1:$port down"; down=1
    fi
  done
  return "$down"
}

case "${1:-}" in
  start) start ;;
  stop) need_root; stop ;;
  status) status ;;
  reset) need_root; shift; [ $# -gt 0 ] || { echo "usage: $0 reset HOST..." >&2; exit 2; }
    for host in "$@"; do reset "$host"; done ;;
  *) echo "usage: $0 start|stop|status|reset HOST..." >&2; exit 2 ;;
esac
