# The keeper (libexec/release-keeper) holds the sockets named by `listen` and hands them to
# each generation of the service: `reload` starts the next generation on the same sockets
# and stops the one before once the new one is ready, so no connection is refused. Its pid
# is in the pid file; it writes $RELEASE_TMP/$RELEASE_NAME.keeper (the serving generation).

# Run the keeper: $1 = run|reload, then a command prefix (e.g. exec setsid). The env file's
# variables and the configured defaults are unset for each generation, whose launcher reads
# them afresh.
rb_keeper() {
  rb_k_mode=$1
  shift
  "$@" "$RELEASE_ROOT/libexec/release-keeper" "$rb_k_mode" --name "$RELEASE_NAME" \
    --tmp "$RELEASE_TMP" --launcher "$RELEASE_ROOT/bin/$rb_launcher_file" --version "$RELEASE_VSN" \
    --stop-timeout "$rb_timeout" --ready-timeout "$rb_ready_timeout" \
    --unset "${rb_file_keys:-} $rb_default_keys" {{KEEPER_ARGS}}
}

# Read the state file: rb_s_keeper, rb_s_gen, rb_s_pid, rb_s_vsn. Succeeds when the serving
# pid it names is alive and runs this service.
rb_read_state() {
  rb_s_keeper='' rb_s_gen='' rb_s_pid='' rb_s_vsn=''
  [ -f "$rb_statefile" ] && [ ! -L "$rb_statefile" ] || return 1
  while IFS=' ' read -r rb_k rb_v; do
    case $rb_k in
      keeper) rb_s_keeper=$rb_v ;;
      generation) rb_s_gen=$rb_v ;;
      pid) rb_s_pid=$rb_v ;;
      version) rb_s_vsn=$rb_v ;;
    esac
  done < "$rb_statefile"
  rb_ours "$rb_s_pid" "$rb_main"
}

# A generation still serving after its keeper died (kill -9): stop it, so a new keeper can
# bind the sockets. The only path that refuses connections for a moment; said so.
rb_stop_orphan() {
  rb_read_state || return 0
  rb_valid_pid "$rb_s_keeper" && rb_alive "$rb_s_keeper" && rb_ours "$rb_s_keeper" release-keeper && return 0
  rb_err "the keeper is gone but generation $rb_s_gen (pid $rb_s_pid, $rb_s_vsn) still serves; stopping it so a new keeper can take the sockets"
  rb_term_wait "$rb_s_pid" "$rb_timeout"
  rm -f "$rb_statefile"
}

# Start the keeper in the background and wait until its first generation is ready.
rb_keeper_daemon() {
  rb_stop_orphan
  rb_prepare daemon norequire
  rb_open_log
  rb_log_from=$(wc -c < "$rb_log") || rb_log_from=0
  rm -f "$rb_statefile"
  if command -v setsid >/dev/null 2>&1; then
    (rb_keeper run exec setsid) < /dev/null >> "$rb_sink" 2>&1 &
  else
    (rb_keeper run exec nohup) < /dev/null >> "$rb_sink" 2>&1 &
  fi
  rb_pid=$!
  rb_write_pid "$rb_pid"
  rb_waited=0
  until rb_read_state && [ "$rb_s_keeper" = "$rb_pid" ]; do
    if ! rb_alive "$rb_pid" || [ "$rb_waited" -ge $(((rb_ready_timeout + 10) * 10)) ]; then
      kill -TERM "$rb_pid" 2>/dev/null
      rb_start_failed "did not become ready"
    fi
    rb_nap
    rb_waited=$((rb_waited + rb_tick))
  done
  rb_unlock
  rb_hook post-start
  rb_say "$RELEASE_NAME $RELEASE_VSN started (pid $rb_s_pid, generation $rb_s_gen, keeper pid $rb_pid)"
}

# Hand the keeper's sockets to a new generation of this release (the launcher's own): the
# old generation drains once the new one is ready, and keeps serving if it never is. A
# service running without a keeper (a release before `listen`) is stopped, then started.
rb_reload() {
  rb_stop_timeout
  rb_lock
  if rb_running && [ "$rb_pid_kind" = keeper ]; then
    rb_prepare reload norequire
    rb_answer=$(rb_keeper reload 2>&1)
    case $rb_answer in
      ok\ *)
        rb_unlock
        rb_hook post-start
        rb_read_state
        rb_say "$RELEASE_NAME $RELEASE_VSN serving (pid $rb_s_pid, generation $rb_s_gen); the previous generation drains" ;;
      *)
        rb_die "reload to $RELEASE_VSN failed: ${rb_answer#error }" ;;
    esac
  elif [ -n "$rb_pid" ]; then
    rb_err "pid $rb_pid runs without a keeper: stopping it, then starting $RELEASE_VSN (one gap; later reloads have none)"
    rb_term_wait "$rb_pid" "$rb_timeout"
    rm -f "$rb_pidfile"
    rb_keeper_daemon
  else
    rb_keeper_daemon
  fi
}

# `status` with a keeper: the serving generation, or the truth about a dead keeper.
rb_keeper_status() {
  if rb_running; then
    if rb_read_state; then
      rb_say "$RELEASE_NAME $rb_s_vsn running (pid $rb_s_pid, generation $rb_s_gen, keeper pid $rb_pid)"
    else
      rb_say "$RELEASE_NAME running (keeper pid $rb_pid, no generation serving yet)"
    fi
    return 0
  fi
  if rb_read_state; then
    rb_say "$RELEASE_NAME $rb_s_vsn: the keeper is not running, but generation $rb_s_gen (pid $rb_s_pid) still serves without it; \`daemon\` or \`reload\` takes over"
    return 1
  fi
  rb_say "$RELEASE_NAME $RELEASE_VSN not running"
  return 3
}
