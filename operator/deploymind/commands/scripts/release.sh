# Release, foreground part: start the detached release job of this attempt (or find it already started),
# wait for its result file and print it. The job survives a dropped connection; calling again with the same
# attempt waits for (or reads) the same job's result instead of starting another.
set -u
umask 077
mkdir -p -- "$rel_dir" || { printf '{"result":"Failed","revision":%s,"message":%s}\n' "$(json_str "$revision")" \
  "$(json_str "cannot create $rel_dir: give the login user a writable host directory")"; exit 0; }

exec 7> "$rel_dir/start.lock"
flock 7
started=""
while :; do
  exec 8> "$rel_dir/job.lock"
  if flock -n 8; then
    # No job of this revision runs.
    if [ -f "$result_file" ] && [ "$(cat "$rel_dir/attempt" 2>/dev/null)" = "$attempt" ]; then
      break
    fi
    rm -f -- "$result_file"
    printf '%s' "$attempt" > "$rel_dir/attempt"
    # The env file comes from stdin only: its values are never on a command line or in this text.
    cat > "$env_file"
    write_job "$rel_dir/job.sh"
    # setsid + nohup: the job leaves this session and process group, so neither a dropped connection
    # nor a transport timeout that kills this script's group stops it. It inherits fd 8 and so holds the
    # job lock for as long as it runs.
    setsid nohup bash "$rel_dir/job.sh" < /dev/null >> "$rel_dir/job.log" 2>&1 7>&- &
    started=1
    exec 8>&-
    break
  fi
  exec 8>&-
  # A job runs: ours (same attempt) is waited for; another attempt's job is waited out, then ours starts.
  [ "$(cat "$rel_dir/attempt" 2>/dev/null)" = "$attempt" ] && break
  flock -u 7
  until flock -n "$rel_dir/job.lock" true; do nap 0.2; done
  flock 7
done
flock -u 7
exec 7>&-
[ -n "$started" ] || cat > /dev/null

until [ -f "$result_file" ]; do
  if flock -n "$rel_dir/job.lock" true && [ ! -f "$result_file" ]; then
    printf '{"result":"Failed","revision":%s,"message":%s}\n' "$(json_str "$revision")" \
      "$(json_str "the release job stopped without a result (see $rel_dir/job.log on the host): retry the release")"
    exit 0
  fi
  nap 0.2
done
cat -- "$result_file"
