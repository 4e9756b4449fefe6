#!/usr/bin/env bash
# What `deploy` sends and how long it takes, over a loopback sshd with a byte-counting proxy
# (ssh's ProxyCommand), on the webapp fixture with ~300 MB of generated priv data (half
# random, half text). Prints each figure beside the issue's target. Not a test: the numbers
# depend on the machine; the README quotes a run.
#
#  1. first deploy of a release to one host: bytes on the wire / compressed bundle size, to a
#     host with zstd (the bundle's own bytes go) and to one without (a gzip transfer)
#  2. upgrade in which one 5 MB file and the executables changed: bytes sent / (changed
#     bytes + MANIFEST.json)
#  3. deploy to 4 hosts with --batch 100% / deploy to 1 host (wall time, median of 3)
#
# Usage: sudo benches/deploy.sh   (creates the local users rbhost1..rbhost4, like the tests)
# Needs: root, sshd, ssh, ssh-keygen, useradd, python3, GNU tar, zstd.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-$REPO/target/bench-deploy}
TOOL=$REPO/target/release/cargo-release-bundle
[ "$(id -u)" = 0 ] || { echo "run as root (it creates local users as hosts)" >&2; exit 2; }
for t in /usr/sbin/sshd ssh ssh-keygen useradd python3 tar zstd; do
  command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }
done
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml"
rm -rf "$WORK"; mkdir -p "$WORK"; chmod 755 "$WORK"

# The service: the webapp fixture, with ~300 MB of priv data (deterministic).
pkg=$WORK/svc
cp -r "$REPO/fixtures/webapp" "$pkg"; rm -rf "$pkg/target"
python3 - "$pkg/priv/data" <<'PY'
import os, random, sys, base64
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
rng = random.Random(20261201)
for i in range(60):
    raw = rng.randbytes(5 * 1024 * 1024)
    data = raw if i % 2 == 0 else base64.b64encode(raw)[: 5 * 1024 * 1024]
    with open(os.path.join(root, "blob%02d.bin" % i), "wb") as f:
        f.write(data)
PY
bundle() { # version -> path of the bundle
  sed -i "s/^version = \".*\"/version = \"$1\"/" "$pkg/Cargo.toml"
  (cd "$pkg" && "$TOOL" release-bundle -q --message-format json --out-dir "$WORK/out-$1") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])'
}
B1=$(bundle 1.2.0)
# The upgrade: a new version (new executables) and one 5 MB file changed.
python3 - "$pkg/priv/data/blob07.bin" <<'PY'
import sys, random
data = bytearray(open(sys.argv[1], "rb").read())
rng = random.Random(7)
for i in range(0, len(data), 4096):
    data[i] = rng.randrange(256)
open(sys.argv[1], "wb").write(data)
PY
B2=$(bundle 1.3.0)

# Hosts: users rbhost1..4 on one loopback sshd; ssh reaches it through a counting proxy.
for i in 1 2 3 4; do
  id "rbhost$i" >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' "rbhost$i"
  usermod -p '*' "rbhost$i"
  # What an earlier run left: stop its services, remove its deploy paths.
  runuser -u "rbhost$i" -- sh -c 'for d in $HOME/bench/*/current; do [ -x "$d/bin/webapp" ] && "$d/bin/webapp" stop; done; rm -rf "$HOME/bench"' >/dev/null 2>&1 || true
done
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"; chmod 644 "$WORK/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers rbhost1 rbhost2 rbhost3 rbhost4
MaxSessions 100
LogLevel ERROR
Match User rbhost2
  SetEnv PATH=$WORK/nozstd
EOF
# rbhost2 is a host without zstd: its PATH has every command of this machine but zstd.
mkdir -p "$WORK/nozstd"
for d in /usr/local/bin /usr/bin /bin; do
  for p in "$d"/*; do
    n=${p##*/}
    case $n in zstd|unzstd|zstdcat|zstdmt) continue ;; esac
    [ -e "$WORK/nozstd/$n" ] || ln -s "$p" "$WORK/nozstd/$n"
  done
done
/usr/sbin/sshd -D -f "$WORK/sshd_config" & SSHD=$!
trap 'kill $SSHD 2>/dev/null; for i in 1 2 3 4; do runuser -u rbhost$i -- sh -c "for d in \$HOME/bench/*/current; do \$d/bin/webapp stop; done" >/dev/null 2>&1; done' EXIT
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" > "$WORK/known_hosts"
# Counts the bytes the client sends (the upload) per connection: each proxy keeps its running
# total in its own file under $WORK/bytes.d, rewritten as bytes pass, so a proxy killed at any
# moment (ssh's master connection is) has still counted what it forwarded.
cat > "$WORK/count.py" <<'PY'
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
tally = os.path.join(sys.argv[2], str(os.getpid()))
def down():
    while True:
        b = s.recv(65536)
        if not b:
            break
        os.write(1, b)
    os._exit(0)
threading.Thread(target=down, daemon=True).start()
sent = 0
while True:
    b = os.read(0, 65536)
    if not b:
        break
    sent += len(b)
    s.sendall(b)
    with open(tally, "w") as f:
        f.write("%d\n" % sent)
s.shutdown(socket.SHUT_WR)
threading.Event().wait(5)
PY
{
  for i in 1 2 3 4; do printf 'Host h%s\n  HostName 127.0.0.1\n  User rbhost%s\n' "$i" "$i"; done
  printf 'Host *\n  Port %s\n  IdentityFile %s/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile %s/known_hosts\n  StrictHostKeyChecking yes\n  ProxyCommand python3 %s/count.py %s %s/bytes.d\n' \
    "$PORT" "$WORK" "$WORK" "$WORK" "$PORT" "$WORK"
} > "$WORK/ssh_config"
# The timing runs go straight to sshd: the counting proxy is Python, and its own CPU would be
# counted against the deploy.
grep -v ProxyCommand "$WORK/ssh_config" > "$WORK/ssh_config_direct"
sleep 0.5

run=0
SSH_CONFIG=$WORK/ssh_config
deploy() { # bundle hosts... -> JSON summary on stdout; fresh env per host
  local b=$1; shift
  local args=()
  for h in "$@"; do
    args+=(--host "$h")
    n=${h#h}
    printf 'PORT=%s\nDATABASE_URL=postgres://db/x\n' "$((41000 + n * 10 + run))" > "$WORK/env-$h"
    args+=(--env-file "$h=$WORK/env-$h")
  done
  "$TOOL" release-bundle deploy "$b" --ssh-config "$SSH_CONFIG" --path "bench/p$run" \
    --health-url 'http://127.0.0.1:${PORT}/env/RELEASE_VSN' --healthy-for 500ms --health-interval 200ms \
    --message-format json "${args[@]}" | grep deploy-summary
}
sent_of() { python3 -c 'import json,sys; print(sum(h["bytes_sent"] for h in json.loads(sys.stdin.read())["hosts"]))'; }
wire() { cat "$WORK"/bytes.d/* 2>/dev/null | python3 -c 'import sys; print(sum(int(l) for l in sys.stdin))'; }
mkdir -p "$WORK/bytes.d"

size1=$(stat -c %s "$B1")
rm -f "$WORK"/bytes.d/*
first=$(deploy "$B1" h1 | sent_of); first_wire=$(wire)
rm -f "$WORK"/bytes.d/*
first_nozstd=$(deploy "$B1" h2 | sent_of); first_nozstd_wire=$(wire)
rm -f "$WORK"/bytes.d/*
up=$(deploy "$B2" h1 | sent_of); up_wire=$(wire)
changed=$(python3 - "$B1" "$B2" <<'PY'
import json, subprocess, sys
def manifest(b):
    out = subprocess.run(["tar", "-I", "zstd", "-xOf", b, "--wildcards", "*/MANIFEST.json"], capture_output=True, check=True).stdout
    return out, {f["path"]: f.get("sha256") for f in json.loads(out)["files"]}, {f["path"]: f["size"] for f in json.loads(out)["files"]}
_, old, _ = manifest(sys.argv[1])
raw, new, size = manifest(sys.argv[2])
held = set(old.values())
print(sum(size[p] for p, d in new.items() if d and d not in held) + len(raw))
PY
)

# Host-side CPU: sshd (so every session and what it runs on the "hosts") in its own cpuacct
# cgroup, where cgroup v1 has one; deploy-side CPU: the tool and its ssh clients (GNU time).
CG=/sys/fs/cgroup/cpuacct/rb-bench-deploy
if mkdir -p "$CG" 2>/dev/null && echo "$SSHD" > "$CG/cgroup.procs" 2>/dev/null; then
  host_cpu() { cat "$CG/cpuacct.usage"; }
else
  host_cpu() { echo 0; }
fi
times() { # hosts... -> "wall host_cpu deploy_cpu" of the median run (by wall time)
  for r in 1 2 3; do
    run=$((run + 1))
    local s e h0 h1
    h0=$(host_cpu); s=$(date +%s.%N)
    export run
    /usr/bin/time -f '%U %S' -o "$WORK/cpu" bash -c 'deploy "$@"' _ "$B1" "$@" >/dev/null
    e=$(date +%s.%N); h1=$(host_cpu)
    python3 -c "import sys; u, k = open('$WORK/cpu').read().split()[-2:]; print($e - $s, ($h1 - $h0) / 1e9, float(u) + float(k))"
  done | sort -n | sed -n 2p
}
export -f deploy
export WORK TOOL
export SSH_CONFIG=$WORK/ssh_config_direct
run=10; one=$(times h1)
run=20; four=$(times h1 h2 h3 h4)

python3 - "$size1" "$first" "$first_wire" "$first_nozstd" "$first_nozstd_wire" "$changed" "$up" "$up_wire" $one $four <<'PY'
import sys
size, first, first_wire, first_nz, first_nz_wire, changed, up, up_wire, one, one_host, one_deploy, four, four_host, four_deploy = map(float, sys.argv[1:])
print("first deploy, host with zstd: %.1f MB sent (%.1f MB on the wire) for a %.1f MB bundle: %.3fx sent, %.3fx on the wire (target <= 1.02x)" % (first / 1e6, first_wire / 1e6, size / 1e6, first / size, first_wire / size))
print("first deploy, host without zstd: %.1f MB sent (%.1f MB on the wire): %.3fx sent, %.3fx on the wire (gzip fallback)" % (first_nz / 1e6, first_nz_wire / 1e6, first_nz / size, first_nz_wire / size))
print("upgrade: %.1f MB sent (%.1f MB on the wire) for %.1f MB changed + manifest: %.3fx (target <= 1.3x)" % (up / 1e6, up_wire / 1e6, changed / 1e6, up / changed))
print("4 hosts --batch 100%%: %.2f s, 1 host: %.2f s: %.2fx (target <= 1.5x)" % (four, one, four / one))
if four_host > 0:
    cores = len(__import__("os").sched_getaffinity(0))
    print("  CPU, 1 host: %.1f s deploy side + %.1f s on the host" % (one_deploy, one_host))
    print("  CPU, 4 hosts: %.1f s deploy side + %.1f s on the hosts (%.1f s each)" % (four_deploy, four_host, four_host / 4))
    print("  all 4 hosts share this machine's %d cores: the 4-host run needs at least %.1f s of CPU / %d = %.1f s here (%.2fx the 1-host time); on separate hosts each host's share runs beside the others'" % (cores, four_deploy + four_host, cores, (four_deploy + four_host) / cores, (four_deploy + four_host) / cores / one))
PY