# Release, foreground part: start the detached release job of this attempt (or find it already started),
# wait for its result file and print it. The job survives a dropped connection; calling again with the same
# attempt waits for (or reads) the same job's result instead of starting another.
set -u
umask 077
preflight --dir "${needs[@]}"
mkdir -p -- "$rel_dir" || { printf '{"result":"Failed","revision":%s,"message":%s}\n' "$(json_str "$revision")" \
  "$(json_str "cannot create $rel_dir: give the login user a writable host directory")"; exit 0; }

# Read stdin into the env file, check it against its trailer, keep it (0600) as this revision's env file.
receive_env() {
  local tmp="$env_file.new" trailer size digest want_size want_digest
  cat > "$tmp" || return 1
  trailer=$(tail -n 1 -- "$tmp")
  [[ $trailer =~ ^\#deploymind-env\ bytes=([0-9]+)\ sha256=([0-9a-f]{64})$ ]] || { rm -f -- "$tmp"; return 1; }
  want_size=${BASH_REMATCH[1]}
  want_digest=${BASH_REMATCH[2]}
  size=$(( $(wc -c < "$tmp") - ${#trailer} - 1 ))
  [ "$size" = "$want_size" ] || { rm -f -- "$tmp"; return 1; }
  digest=$(head -c "$size" -- "$tmp" | sha256sum)
  [ "${digest%% *}" = "$want_digest" ] || { rm -f -- "$tmp"; return 1; }
  head -c "$size" -- "$tmp" > "$env_file.body" && mv -f -- "$env_file.body" "$env_file"
  rm -f -- "$tmp"
  printf '%s\n' ${secret_env_names[@]+"${secret_env_names[@]}"} > "$secret_names_file"
}

exec 7> "$rel_dir/start.lock"
flock 7
started=""
while :; do
  exec 8> "$rel_dir/job.lock"
  if flock -n 8; then
    # No job of this revision runs.
    # This attempt finished before: read its result back, unless it was one a retry must redo (the image was
    # missing, the disk full, the lock or a port not to be had): those run again.
    if [ -f "$result_file" ] && [ "$(cat "$rel_dir/attempt" 2>/dev/null)" = "$attempt" ] \
        && grep -Eq '"result":"(Released|Unchanged|CandidateUnhealthy|SwitchFailed)"' "$result_file"; then
      break
    fi
    rm -f -- "$result_file"
    if [ "$env_from_stdin" = 1 ]; then
      # The env file comes from stdin only: its values are never on a command line or in this text. Its
      # trailer line says how long it is and its sha256: a truncated stream starts nothing.
      if ! receive_env; then
        printf '{"result":"EnvIncomplete","revision":%s,"message":%s}\n' "$(json_str "$revision")" \
          "$(json_str "the env file arrived incomplete or corrupt (length or sha256 differs): nothing was started; the release is retried")"
        exit 0
      fi
    elif [ ! -f "$env_file" ]; then
      printf '{"result":"EnvMissing","revision":%s,"message":%s}\n' "$(json_str "$revision")" \
        "$(json_str "the host no longer keeps the env file of revision $revision ($env_file): it cannot be run exactly as it ran")"
      exit 0
    fi
    printf '%s' "$attempt" > "$rel_dir/attempt"
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
