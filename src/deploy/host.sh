# Host side of `cargo release-bundle deploy` and `install`: one step per call, run as
#   sh -c "$SCRIPT" rb-host PATH STEP [ARGS...]
# over ssh or locally. It needs only sh, coreutils, tar and gzip. Decisions (what to send,
# what to prune, where to roll back to) are made by the tool; this script carries them out
# under PATH and reports what it sees. Nothing here prints secrets.
set -u
umask 022

rb_path=$1
rb_step=$2
shift 2

rb_die() {
  printf 'rb-host: %s\n' "$*" >&2
  exit 1
}

# A version or release name from the tool: one path component, no leading dot.
rb_name_ok() {
  case $1 in
    ''|.*|*/*) rb_die "not a release name: '$1'" ;;
  esac
}

case $rb_step in
  state|tail|logsize|getenv|check|launcher|systemctl|unlock|verify-release|missing-env|exec|exec-tty|status|keeper|release-command|logs)
    # Steps that only read (or act on what is installed) create nothing.
    if [ ! -d "$rb_path" ]; then
      if [ "$rb_step" = state ]; then
        # Where the path would be (a relative one is under the login directory).
        case $rb_path in /*) rb_root=$rb_path ;; *) rb_root=$(pwd -P)/$rb_path ;; esac
        printf '@@rb root %s\n@@rb current \n@@rb log\n@@rb end\n' "$rb_root"
      fi
      [ "$rb_step" = state ] || [ "$rb_step" = unlock ] || rb_die "nothing is installed under $rb_path"
      exit 0
    fi ;;
  *) mkdir -p -- "$rb_path" || rb_die "cannot create the deploy path $rb_path" ;;
esac
cd -P -- "$rb_path" || rb_die "cannot enter the deploy path $rb_path"

rb_current() {
  rb_link=$(readlink current 2>/dev/null) || return 0
  printf '%s\n' "${rb_link#releases/}"
}

# Variables of shared/env, exported (the launcher's grammar and precedence: rb_parse_env_file).
rb_load_env() {
  [ -f shared/env ] || return 0
  rb_parse_env_file shared/env
}

# What identifies process PID: its start time since boot (field 22 of /proc/PID/stat, read
# after the command name, which may hold spaces) and its state; empty when it is gone.
rb_proc_stat() {
  rb_stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # shellcheck disable=SC2086 # the fields after the name, split on purpose
  set -- ${rb_stat##*) }
  [ "$#" -ge 20 ] || return 1
  printf '%s %s\n' "$1" "${20}"
}

rb_boot_id() {
  cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown
}

# Whether the lock holder recorded in HOLDER still runs: the same boot, a process with that
# pid and start time that is not a zombie (a killed deploy's shell stays one until reaped).
# Without /proc, kill -0 is all there is.
rb_holder_alive() {
  rb_pid=${1#pid=}
  rb_pid=${rb_pid%% *}
  case $rb_pid in ''|*[!0-9]*) return 1 ;; esac
  if [ ! -r /proc/self/stat ]; then
    kill -0 "$rb_pid" 2>/dev/null
    return
  fi
  rb_seen=$(rb_proc_stat "$rb_pid") || return 1
  case $rb_seen in Z\ *|X\ *) return 1 ;; esac
  case $1 in
    *" start="*)
      rb_start=${1#* start=}
      rb_boot=${1#* boot=}
      [ "${rb_boot%% *}" = "$(rb_boot_id)" ] && [ "${rb_seen#* }" = "${rb_start%% *}" ]
      ;;
    *) return 0 ;;
  esac
}

# One attempt at the lock: a new directory with the holder inside, renamed onto
# .deploy/lock (rename(2) onto a lock that exists and is not empty fails: the take is
# atomic). On success this holds it until stdin closes, then exits.
rb_try_lock() {
  rb_new=.deploy/lock.$$
  rm -rf -- "$rb_new"
  mkdir -- "$rb_new" || rb_die "cannot create $rb_path/$rb_new"
  rb_me=$(rb_proc_stat "$$") || rb_me="? ?"
  printf 'pid=%s start=%s boot=%s who=%s version=%s since=%s\n' "$$" "${rb_me#* }" "$(rb_boot_id)" "$1" "$2" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$rb_new/holder"
  if mv -T -- "$rb_new" .deploy/lock 2>/dev/null; then
    printf 'locked %s\n' "$$"
    cat > /dev/null
    exit 0
  fi
  rm -rf -- "$rb_new"
}

# Like OpenSSH's StrictModes: a directory the deploy writes into or deletes under must be a
# real directory (not a link) owned by the deploy user or root and writable by nobody else;
# an ancestor may be writable by others only when sticky (as /tmp is), where they cannot
# rename or remove what is ours. Otherwise another user could swap `releases` for a link and
# have the next prune delete someone else's files.
rb_safe_dir() {
  # shellcheck disable=SC2012 # ls -ldn is the portable way to read owner and mode
  rb_ls=$(ls -ldn -- "$1" 2>/dev/null) || rb_die "cannot inspect $1"
  # shellcheck disable=SC2086 # mode, links, uid: split on purpose
  set -- "$1" "$2" $rb_ls
  case $3 in
    d*) ;;
    *) rb_die "$1 is not a directory (a link or another file); refusing to deploy there" ;;
  esac
  [ "$5" = 0 ] || [ "$5" = "$(id -u)" ] || rb_die "$1 is owned by uid $5, not by the deploy user or root; refusing to deploy there"
  case $2:$3 in
    ancestor:?????????[tT]*) ;;
    *:?????w*|*:????????w*) rb_die "$1 is writable by other users ($3); refusing to deploy there" ;;
  esac
}

# The deploy path, every directory above it, and the layout's own directories.
rb_check_layout() {
  rb_dir=$(pwd -P)
  rb_safe_dir "$rb_dir" own
  while [ "$rb_dir" != / ] && [ -n "$rb_dir" ]; do
    rb_dir=$(dirname -- "$rb_dir")
    rb_safe_dir "$rb_dir" ancestor
  done
  for rb_dir in releases shared shared/tmp .deploy; do
    if [ -e "$rb_dir" ] || [ -L "$rb_dir" ]; then
      rb_safe_dir "$(pwd -P)/$rb_dir" own
    fi
  done
}

# .deploy/ and its log: readable by the deploy user only (events name hosts, versions and
# failures; an older install made them 0755/0644).
rb_private_log() {
  mkdir -p .deploy || rb_die "cannot create $rb_path/.deploy"
  chmod 700 .deploy || rb_die "cannot restrict $rb_path/.deploy"
  ( umask 077; : >> .deploy/log.jsonl ) || rb_die "cannot create $rb_path/.deploy/log.jsonl"
  chmod 600 .deploy/log.jsonl || rb_die "cannot restrict $rb_path/.deploy/log.jsonl"
}

# lock WHO VERSION BREAK: take .deploy/lock and hold it while stdin stays open. The
# holder's pid is this shell, which lives exactly as long as the deploying process.
rb_step_lock() {
  rb_who=$1 rb_version=$2 rb_break=$3
  rb_check_layout
  mkdir -p .deploy releases shared/tmp || rb_die "cannot create the layout under $rb_path"
  chmod 700 shared/tmp 2>/dev/null
  rb_private_log
  while :; do
    rb_try_lock "$rb_who" "$rb_version"
    rb_holder=$(cat .deploy/lock/holder 2>/dev/null) || rb_holder=
    if rb_holder_alive "$rb_holder"; then
      printf 'held %s\n' "$rb_holder"
      exit 3
    fi
    if [ "$rb_break" != 1 ]; then
      printf 'stale %s\n' "${rb_holder:-(no holder recorded)}"
      exit 3
    fi
    rm -rf -- .deploy/lock || rb_die "cannot remove the stale lock $rb_path/.deploy/lock"
    printf 'broke %s\n' "${rb_holder:-(no holder recorded)}"
    rb_break=0
  done
}

# unlock PID: remove the lock when the holder is the keeper with that pid.
rb_step_unlock() {
  rb_holder=$(cat .deploy/lock/holder 2>/dev/null) || exit 0
  case $rb_holder in "pid=$1 "*) rm -rf -- .deploy/lock ;; esac
}

# What the tool decides from: current, the installed releases with their SHA256SUMS,
# and the event log. Sections start with "@@rb ".
rb_step_state() {
  printf '@@rb root %s\n' "$(pwd -P)"
  printf '@@rb user %s\n' "$(id -un 2>/dev/null)"
  if command -v zstd >/dev/null 2>&1; then echo '@@rb zstd yes'; else echo '@@rb zstd no'; fi
  printf '@@rb current %s\n' "$(rb_current)"
  if [ -d releases ]; then
    for rb_dir in releases/*/; do
      [ -d "$rb_dir" ] || continue
      rb_v=${rb_dir#releases/}
      rb_v=${rb_v%/}
      printf '@@rb release %s\n' "$rb_v"
      [ -f "$rb_dir/SHA256SUMS" ] && cat -- "$rb_dir/SHA256SUMS"
    done
  fi
  rb_v=$(rb_current)
  if [ -n "$rb_v" ] && [ -f "releases/$rb_v/MANIFEST.json" ]; then
    printf '@@rb manifest %s\n' "$rb_v"
    cat -- "releases/$rb_v/MANIFEST.json"
    echo
  fi
  printf '@@rb log\n'
  [ -f .deploy/log.jsonl ] && cat .deploy/log.jsonl
  printf '@@rb end\n'
}

# Leftovers of a deploy that was killed: partial transfers and temporary links.
rb_step_sweep() {
  for rb_f in releases/.incoming-* .current.tmp.*; do
    [ -e "$rb_f" ] || [ -L "$rb_f" ] || continue
    rm -rf -- "$rb_f"
    printf '%s\n' "$rb_f"
  done
}

# receive ID WIRE [TOP]: extract the transfer from stdin into releases/.incoming-ID as
# it arrives, hashing it on the way (through a FIFO: sha256sum beside tar), and print its
# sha256. Nothing there is used until the tool has compared that digest and `unpack`
# has checked every file.
rb_step_receive() {
  rb_name_ok "$1"
  rb_dir=releases/.incoming-$1
  rm -rf -- "$rb_dir" "$rb_dir.fifo" "$rb_dir.sum"
  mkdir -- "$rb_dir" || rb_die "cannot create $rb_path/$rb_dir"
  mkfifo -- "$rb_dir.fifo" || rb_die "cannot create $rb_path/$rb_dir.fifo"
  sha256sum < "$rb_dir.fifo" > "$rb_dir.sum" &
  rb_hasher=$!
  case $2 in
    gz|bundle-gz) tee -- "$rb_dir.fifo" | tar -xzf - -C "$rb_dir" ;;
    zst|bundle-zst) tee -- "$rb_dir.fifo" | zstd -dcq | tar -xf - -C "$rb_dir" ;;
    *) tee -- "$rb_dir.fifo" | tar -xf - -C "$rb_dir" ;;
  esac
  rb_status=$?
  # The bundle itself: its top directory becomes the release.
  case $2 in
    bundle-*)
      rb_name_ok "$3"
      if [ "$rb_status" = 0 ]; then
        mv -- "$rb_dir/$3" "$rb_dir/release" || rb_status=1
      fi ;;
  esac
  wait "$rb_hasher"
  rb_sum=$(cat -- "$rb_dir.sum") || rb_sum=
  rm -f -- "$rb_dir.fifo" "$rb_dir.sum"
  if [ "$rb_status" != 0 ]; then
    rm -rf -- "$rb_dir"
    rb_die "cannot extract the transfer; nothing was installed"
  fi
  printf '%s\n' "${rb_sum%% *}"
}

# A failed install: the incoming directory ($rb_dir) goes, then the error.
rb_fail() {
  rm -rf -- "$rb_dir"
  rb_die "$@"
}

# check-sums DIR OUT: check DIR's SHA256SUMS, its report in OUT. GNU's sha256sum is strict
# about the list's format and reports failures only; busybox's takes no long options.
rb_check_sums() {
  if sha256sum --version >/dev/null 2>&1; then
    (cd "$1" && sha256sum --quiet --strict -c SHA256SUMS) > "$2" 2>&1
  else
    (cd "$1" && sha256sum -c SHA256SUMS) > "$2" 2>&1
  fi
}

# sums-failed OUT N: the first N lines of a failed check that are not a file's `OK`.
rb_sums_failed() {
  grep -v ': OK$' -- "$1" | head -n "$2" >&2
}

# unpack ID VERSION: hard-link the files the transfer names from installed releases,
# check every file with sha256sum -c, and only then rename it to releases/VERSION.
rb_step_unpack() {
  rb_id=$1 rb_version=$2
  rb_name_ok "$rb_id"
  rb_name_ok "$rb_version"
  rb_dir=releases/.incoming-$rb_id
  [ -d "$rb_dir/release" ] || rb_fail "no transfer $rb_id was received"
  [ ! -e "releases/$rb_version" ] || rb_fail "releases/$rb_version is already installed"
  if [ -f "$rb_dir/links" ]; then
    # Three lines per file: the installed copy (under releases/), its path in the new
    # release, and its mode. Same mode: a hard link; otherwise a copy with that mode.
    while IFS= read -r rb_src && IFS= read -r rb_dst && IFS= read -r rb_mode; do
      rb_to=$rb_dir/release/$rb_dst
      mkdir -p -- "$(dirname -- "$rb_to")" || rb_fail "cannot create the parent of $rb_dst"
      if [ "$(stat -c %a -- "releases/$rb_src" 2>/dev/null)" = "$rb_mode" ]; then
        ln -- "releases/$rb_src" "$rb_to" 2>/dev/null || cp -- "releases/$rb_src" "$rb_to" || rb_fail "cannot copy releases/$rb_src"
      else
        cp -- "releases/$rb_src" "$rb_to" || rb_fail "cannot copy releases/$rb_src"
        chmod "$rb_mode" "$rb_to" || rb_fail "cannot set the mode of $rb_dst"
      fi
    done < "$rb_dir/links"
  fi
  if ! rb_check_sums "$rb_dir/release" "$rb_dir/sums.out"; then
    rb_sums_failed "$rb_dir/sums.out" 20
    rb_fail "the release does not match its SHA256SUMS; nothing was installed"
  fi
  mv -T -- "$rb_dir/release" "releases/$rb_version" || rb_fail "cannot rename the release into place"
  rm -rf -- "$rb_dir"
}

rb_step_discard() {
  rb_name_ok "$1"
  rm -rf -- "releases/.incoming-$1" "releases/.incoming-$1.fifo" "releases/.incoming-$1.sum"
}

# log: one event line from stdin (never argv), appended to a log only the owner reads.
rb_step_log() {
  rb_private_log
  cat >> .deploy/log.jsonl || rb_die "cannot write $rb_path/.deploy/log.jsonl"
}

# verify-release VERSION: the installed release still matches its SHA256SUMS (checked
# before every switch to a release that was installed earlier); the first mismatches on
# stderr.
rb_step_verify_release() {
  rb_name_ok "$1"
  [ -f "releases/$1/SHA256SUMS" ] || rb_die "releases/$1 has no SHA256SUMS"
  rb_out=.deploy/verify.$$
  if rb_check_sums "releases/$1" "$rb_out"; then
    rm -f -- "$rb_out"
    exit 0
  fi
  rb_sums_failed "$rb_out" 5
  rm -f -- "$rb_out"
  rb_die "releases/$1 no longer matches its SHA256SUMS"
}

# switch VERSION: current -> releases/VERSION, atomically (a new link renamed over).
rb_step_switch() {
  rb_name_ok "$1"
  [ -d "releases/$1" ] || rb_die "releases/$1 is not installed"
  rb_tmp=.current.tmp.$$
  rm -f -- "$rb_tmp"
  ln -s -- "releases/$1" "$rb_tmp" || rb_die "cannot create $rb_path/$rb_tmp"
  mv -T -- "$rb_tmp" current || rb_die "cannot switch $rb_path/current"
}

# shared-dirs DIR...: directories under shared/ (validated by the tool), created if missing.
rb_step_shared_dirs() {
  for rb_d in "$@"; do
    case $rb_d in ''|/*|*..*) rb_die "not a directory inside shared/: '$rb_d'" ;; esac
    mkdir -p -- "shared/$rb_d" || rb_die "cannot create $rb_path/shared/$rb_d"
  done
}

# launcher VERSION NAME COMMAND [PROCESSES]: run the release's launcher, for the host's
# processes (space-separated, validated names) when given.
rb_step_launcher() {
  rb_name_ok "$1"
  rb_name_ok "$2"
  if [ -n "${4:-}" ]; then
    RELEASE_PROCESSES=$4
    export RELEASE_PROCESSES
  fi
  exec "releases/$1/bin/$2" "$3" < /dev/null
}

# keeper VERSION: succeed when the release ships the keeper (it has `listen`: its restarts
# are handovers).
rb_step_keeper() {
  rb_name_ok "$1"
  [ -f "releases/$1/libexec/release-keeper" ] && [ -x "releases/$1/libexec/release-keeper" ]
}

# systemctl UNIT COMMAND: the service manager instead of the launcher.
rb_step_systemctl() {
  case $2 in
    is-active) exec systemctl is-active --quiet -- "$1" ;;
    *) exec systemctl "$2" -- "$1" < /dev/null ;;
  esac
}

# getenv VERSION NAME VAR...: values the service would see (shared/env, then the
# release's configured defaults), one per line, for expanding a health URL.
rb_step_getenv() {
  rb_name_ok "$1"
  rb_name_ok "$2"
  rb_launcher=releases/$1/bin/$2
  shift 2
  rb_load_env
  rb_defaults=$("$rb_launcher" env 2>/dev/null) || rb_defaults=
  for rb_var in "$@"; do
    case $rb_var in ''|[0-9]*|*[!A-Za-z0-9_]*) rb_die "not a variable name: '$rb_var'" ;; esac
    if eval "[ -n \"\${$rb_var+x}\" ]"; then
      eval "printf '%s\n' \"\${$rb_var}\""
      continue
    fi
    rb_found=
    while IFS= read -r rb_line; do
      case $rb_line in "$rb_var="*) rb_found=${rb_line#*=}; break ;; esac
    done <<EOF
$rb_defaults
EOF
    printf '%s\n' "$rb_found"
  done
}

# missing-env VERSION NAME: the variables the release requires that this host's
# environment (shared/env, the release's defaults) leaves unset, one per line.
rb_step_missing_env() {
  rb_name_ok "$1"
  rb_name_ok "$2"
  [ -x "releases/$1/bin/$2" ] || rb_die "releases/$1/bin/$2 is not installed"
  "releases/$1/bin/$2" env < /dev/null 2>/dev/null | while IFS= read -r rb_line; do
    case $rb_line in *' is not set') printf '%s\n' "${rb_line% is not set}" ;; esac
  done
}

# check VERSION COMMAND: a health command, in the release directory, with shared/env.
rb_step_check() {
  rb_name_ok "$1"
  rb_load_env
  cd "releases/$1" || rb_die "releases/$1 is not installed"
  exec sh -c "$2" < /dev/null
}

# logsize NAME: where the service's log ends now (a new process's lines start there).
rb_step_logsize() {
  rb_name_ok "$1"
  rb_log=shared/tmp/log/$1.log
  if [ -f "$rb_log" ]; then wc -c < "$rb_log"; else echo 0; fi
}

# tail NAME FROM: the service's log from byte FROM on (from the start when the log is
# shorter, as after a rotation), at most its last 64 KiB.
rb_step_tail() {
  rb_name_ok "$1"
  rb_log=shared/tmp/log/$1.log
  [ -f "$rb_log" ] || exit 0
  rb_from=${2:-0}
  case $rb_from in ''|*[!0-9]*) rb_from=0 ;; esac
  [ "$(wc -c < "$rb_log")" -ge "$rb_from" ] || rb_from=0
  tail -c +"$((rb_from + 1))" -- "$rb_log" | tail -c 65536
  exit 0
}

# prune VERSION...: remove releases (never the one current points at, never through a
# link).
rb_step_prune() {
  rb_check_layout
  rb_cur=$(rb_current)
  for rb_v in "$@"; do
    rb_name_ok "$rb_v"
    [ "$rb_v" != "$rb_cur" ] || rb_die "releases/$rb_v is current; not pruning it"
    rm -rf -- "releases/$rb_v" || rb_die "cannot remove releases/$rb_v"
  done
}

# The host's environment from stdin, as shared/env: 0600 from the start, renamed in.
rb_step_env_file() {
  umask 077
  mkdir -p shared || rb_die "cannot create $rb_path/shared"
  rb_tmp=shared/.env.tmp.$$
  cat > "$rb_tmp" || { rm -f -- "$rb_tmp"; rb_die "cannot write $rb_path/$rb_tmp"; }
  if ! { chmod 600 "$rb_tmp" && mv -f -- "$rb_tmp" shared/env; }; then
    rm -f -- "$rb_tmp"
    rb_die "cannot install $rb_path/shared/env"
  fi
}

# exec NAME COMMAND [ARGS...]: the current release's launcher, from the release's directory
# (the launcher reads shared/env itself: the environment the service gets). Arguments are
# passed as they arrived, never evaluated. exec-tty keeps stdin (a console on a terminal).
rb_step_exec() {
  rb_name_ok "$1"
  rb_cur=$(rb_current)
  [ -n "$rb_cur" ] || rb_die "nothing is current under $rb_path"
  cd "releases/$rb_cur" || rb_die "releases/$rb_cur is not installed"
  rb_launcher=bin/$1
  shift
  if [ "$rb_step" = exec-tty ]; then
    exec "./$rb_launcher" "$@"
  fi
  exec "./$rb_launcher" "$@" < /dev/null
}

# release-command VERSION NAME COMMAND [ARGS...]: a launcher command of an installed release
# (the new one, before anything switches), from its directory; the launcher reads
# shared/env itself. Arguments arrive quoted, never evaluated.
rb_step_release_command() {
  rb_name_ok "$1"
  rb_name_ok "$2"
  cd "releases/$1" || rb_die "releases/$1 is not installed"
  rb_launcher=bin/$2
  shift 2
  exec "./$rb_launcher" "$@" < /dev/null
}

# Lines of stdin holding the fixed string $1 (every line when it is empty), one at a time.
rb_holding() {
  if [ -z "$1" ]; then
    cat
    return
  fi
  while IFS= read -r rb_l || [ -n "$rb_l" ]; do
    case $rb_l in *"$1"*) printf '%s\n' "$rb_l" ;; esac
  done
}

# Run "$@" (a `tail -F` or `journalctl -f`) into a filter until the connection closes (stdin
# ends), then stop both: nothing is left running on the host.
rb_follow_until_closed() {
  rb_dir=$(mktemp -d) || rb_die "cannot create a temporary directory"
  mkfifo "$rb_dir/lines" || rb_die "cannot create a fifo in $rb_dir"
  "$@" > "$rb_dir/lines" 2>/dev/null &
  rb_follower=$!
  rb_holding "$rb_pattern" < "$rb_dir/lines" &
  rb_filter=$!
  cat > /dev/null
  kill "$rb_follower" "$rb_filter" 2>/dev/null
  wait
  rm -rf "$rb_dir"
}

# logs NAME UNIT LINES FOLLOW SINCE PATTERN: the service's log (the launcher's, under
# shared/tmp/log, or the journal of UNIT when one is named): its last LINES lines holding
# PATTERN (a fixed string), and with FOLLOW=1 new ones as they come until the connection
# closes. SINCE (journal only) is passed to journalctl.
rb_step_logs() {
  rb_name_ok "$1"
  rb_unit=$2 rb_lines=$3 rb_follow=$4 rb_since=$5 rb_pattern=$6
  case $rb_lines in ''|*[!0-9]*) rb_die "not a line count: '$rb_lines'" ;; esac
  if [ -n "$rb_unit" ]; then
    set -- journalctl --no-pager -o cat -u "$rb_unit"
    [ -z "$rb_since" ] || set -- "$@" --since "$rb_since"
  else
    rb_file=shared/tmp/log/$1.log
    [ -f "$rb_file" ] || rb_die "no log at $rb_path/$rb_file (has the service run here with \`daemon\`?)"
    set -- tail
  fi
  if [ "$rb_follow" = 1 ]; then
    # The last lines first, then new ones (-F follows a rotated file).
    if [ -n "$rb_unit" ]; then set -- "$@" -n "$rb_lines" -f; else set -- "$@" -n "$rb_lines" -F "$rb_file"; fi
    rb_follow_until_closed "$@"
  elif [ -n "$rb_unit" ]; then
    "$@" | rb_holding "$rb_pattern" | tail -n "$rb_lines"
  else
    rb_holding "$rb_pattern" < "$rb_file" | tail -n "$rb_lines"
  fi
}

# status NAME: what `status` reports of this host: current, the service's process (pid, the
# release it runs, seconds up), the deploy lock (whether its holder lives), then the log.
# `@@rb process NAME [PID RELEASE UPTIME]` for process NAME whose pid is $2 (empty, or a
# dead process: stopped).
rb_report_process() {
  rb_pid=$2
  case $rb_pid in ''|*[!0-9]*) rb_pid= ;; esac
  rb_seen=
  [ -n "$rb_pid" ] && rb_seen=$(rb_proc_stat "$rb_pid")
  case $rb_seen in
    ''|Z\ *|X\ *) printf '@@rb process %s\n' "$1" ;;
    *)
      rb_exe=$(readlink "/proc/$rb_pid/exe" 2>/dev/null) || rb_exe=
      rb_rel=${rb_exe#"$(pwd -P)"/releases/}
      case $rb_rel in */*) rb_rel=${rb_rel%%/*} ;; *) rb_rel='?' ;; esac
      rb_up=$(( $(date +%s) - $(stat -c %Y "/proc/$rb_pid" 2>/dev/null || date +%s) ))
      printf '@@rb process %s %s %s %s\n' "$1" "$rb_pid" "$rb_rel" "$rb_up" ;;
  esac
}

# A field of the keeper's state file $1: the value after KEY $2.
rb_state_field() {
  while IFS=' ' read -r rb_k rb_v; do
    if [ "$rb_k" = "$2" ]; then
      printf '%s\n' "$rb_v"
      return 0
    fi
  done < "$1"
}

rb_step_status() {
  rb_name_ok "$1"
  printf '@@rb current %s\n' "$(rb_current)"
  rb_web=$(cat "shared/tmp/$1.pid" 2>/dev/null) || rb_web=
  rb_state=shared/tmp/$1.keeper
  if [ -f "$rb_state" ]; then
    # With a keeper: the pid file names the keeper, its state the serving generation.
    rb_live=dead
    case $(rb_proc_stat "$rb_web" 2>/dev/null) in ''|Z\ *|X\ *) ;; *) rb_live=live ;; esac
    printf '@@rb keeper %s %s %s\n' "$rb_live" "$rb_web" "$(rb_state_field "$rb_state" generation)"
    rb_web=$(rb_state_field "$rb_state" pid)
  fi
  # A host without web (a worker's) has no pid file for it: nothing to report.
  [ -z "$rb_web" ] || rb_report_process web "$rb_web"
  for rb_f in "shared/tmp/$1"-*.pid; do
    [ -f "$rb_f" ] || continue
    rb_p=${rb_f#"shared/tmp/$1"-}
    rb_report_process "${rb_p%.pid}" "$(cat "$rb_f" 2>/dev/null)"
  done
  if [ -d .deploy/lock ]; then
    rb_holder=$(cat .deploy/lock/holder 2>/dev/null) || rb_holder=
    if rb_holder_alive "$rb_holder"; then rb_live=live; else rb_live=stale; fi
    printf '@@rb lock %s %s\n' "$rb_live" "$rb_holder"
  fi
  printf '@@rb log\n'
  [ -f .deploy/log.jsonl ] && cat .deploy/log.jsonl
  printf '@@rb end\n'
}

# One step per call: dispatch.
case $rb_step in
  lock) rb_step_lock "$@" ;;
  unlock) rb_step_unlock "$@" ;;
  state) rb_step_state "$@" ;;
  sweep) rb_step_sweep "$@" ;;
  receive) rb_step_receive "$@" ;;
  unpack) rb_step_unpack "$@" ;;
  discard) rb_step_discard "$@" ;;
  log) rb_step_log "$@" ;;
  verify-release) rb_step_verify_release "$@" ;;
  switch) rb_step_switch "$@" ;;
  launcher) rb_step_launcher "$@" ;;
  systemctl) rb_step_systemctl "$@" ;;
  keeper) rb_step_keeper "$@" ;;
  shared-dirs) rb_step_shared_dirs "$@" ;;
  getenv) rb_step_getenv "$@" ;;
  missing-env) rb_step_missing_env "$@" ;;
  check) rb_step_check "$@" ;;
  logsize) rb_step_logsize "$@" ;;
  tail) rb_step_tail "$@" ;;
  prune) rb_step_prune "$@" ;;
  env-file) rb_step_env_file "$@" ;;
  exec|exec-tty) rb_step_exec "$@" ;;
  release-command) rb_step_release_command "$@" ;;
  logs) rb_step_logs "$@" ;;
  status) rb_step_status "$@" ;;
  *) rb_die "unknown step '$rb_step'" ;;
esac
