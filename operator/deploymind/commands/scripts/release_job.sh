# Release, detached job: under the host lock, prove the candidate healthy on a free port, then switch the
# stable container to it (Recreate), restoring the old one if anything fails after its stop. Writes one JSON
# line to $result_file (atomically) and exits. The env file stays: it is this revision's, kept (0600) until
# pruning removes the revision, so a revert runs the revision with exactly the env it ran with.
set -u
umask 077
start_ms=$(now_ms)
candidate_ms=-1
healthy_ms=-1
switch_ms=-1
cport=""
had_old=""
trap 'exit 143' TERM INT

ms_json() { if [ "$1" -ge 0 ]; then secs "$1"; else printf null; fi; }

finish() {  # result message [logs as a JSON array]
  local result=$1 message=$2 logs=${3:-[]} cid="" iid=""
  if state=$(dm_state "$stable" 2>/dev/null); then read -r cid _ <<< "$state"; fi
  iid=$(dm_image_id 2>/dev/null) || iid=""
  printf '{"result":%s,"revision":%s,"attempt":%s,"image":%s,"image_id":%s,"container_id":%s,"port":%s,"candidate_port":%s,"timings":{"candidate_start_s":%s,"healthy_after_s":%s,"switch_s":%s,"total_s":%s},"host_dir":%s,"logs":%s,"message":%s}\n' \
    "$(json_str "$result")" "$(json_str "$revision")" "$(json_str "$attempt")" "$(json_str "$image")" \
    "$(json_str "$iid")" "$(json_str "$cid")" "$port" "${cport:-null}" \
    "$(ms_json "$candidate_ms")" "$(ms_json "$healthy_ms")" "$(ms_json "$switch_ms")" \
    "$(ms_json $(( $(now_ms) - start_ms )))" "$(json_str "$host_dir")" "$logs" "$(json_str "$message")" > "$result_file.tmp"
  mv -f -- "$result_file.tmp" "$result_file"
  exit 0
}

# The values to mask, longest first (so a value containing another is masked whole), one per line: those of
# env names taken from Secrets, and any value long enough to be a credential. Short plain values (MODE=a)
# stay readable: masking them would garble every message they happen to occur in.
env_values() {
  local line v name secret
  secret=" $(tr '\n' ' ' < "$secret_names_file" 2>/dev/null) "
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in *=*) ;; *) continue ;; esac
    name=${line%%=*}
    v=${line#*=}
    [ -n "$v" ] || continue
    case $secret in *" $name "*) ;; *) [ "${#v}" -ge "$scrub_min_length" ] || continue ;; esac
    printf '%d\t%s\n' "${#v}" "$v"
  done < "$env_file" | sort -rn | cut -f2-
}

# $1 with every value to mask replaced by ***: nothing that leaves the host may carry a secret.
scrub() {
  local text=$1 v mask='***'
  while IFS= read -r v; do
    text=${text//"$v"/$mask}
  done < <(env_values)
  printf '%s' "$text"
}

# The last lines a container wrote, scrubbed, as a JSON array.
container_logs() {
  json_lines "$(scrub "$(dm_logs "$1" 2>&1)")"
}

probe() {
  curl -fsS -o /dev/null --max-time "$probe_timeout" "http://127.0.0.1:$1$health_path" 2>/dev/null
}

# Poll the app on port $1 until it answers or the startup timeout passes; prints the ms it took. Polls fast
# at first (most apps answer within a fraction of a second), then every half longer, up to $poll_interval.
wait_healthy() {
  local t0 deadline pause=$poll_min_ms
  t0=$(now_ms)
  deadline=$(( t0 + startup_timeout * 1000 ))
  while :; do
    if probe "$1"; then echo $(( $(now_ms) - t0 )); return 0; fi
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    nap "$(secs "$pause")"
    pause=$(( pause * 3 / 2 ))
    [ "$pause" -le "$poll_interval_ms" ] || pause=$poll_interval_ms
  done
}

# TCP ports something listens on, from the kernel's tables (no ss/netstat needed).
listening_ports() {
  local f local_addr st
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r _ local_addr _ st _; do
      [ "$st" = 0A ] && echo $(( 16#${local_addr##*:} ))
    done < <(tail -n +2 "$f")
  done
}

pick_port() {
  local used p _
  used=" $(listening_ports | tr '\n' ' ') "
  for _ in $(seq 1 100); do
    p=$(( 20000 + RANDOM % 12000 ))
    [ "$p" = "$port" ] && continue
    case $used in *" $p "*) continue ;; esac
    echo "$p"
    return 0
  done
  return 1
}

disk_ok() {
  local free root
  free=$(free_mb "$host_dir") || return 0
  [ "$free" -ge "$min_free_mb" ] || return 1
  root=$(dm_root_dir 2>/dev/null) || return 0
  free=$(free_mb "$root") || return 0
  [ "$free" -ge "$min_free_mb" ]
}

# Remove images of this app beyond the ones to keep (never one a container uses: docker refuses), and the
# finished release directories (with their env files) of revisions no longer kept.
prune() {
  local keep keep_rev tag dir rev running="" running_rev=""
  if state=$(dm_state "$stable" 2>/dev/null); then read -r _ _ _ running running_rev <<< "$state"; fi
  keep=" $image $running ${keep_images[*]+"${keep_images[*]}"} "
  keep_rev=" $revision $running_rev ${keep_revisions[*]+"${keep_revisions[*]}"} "
  while IFS= read -r tag; do
    case $tag in *:"<none>") continue ;; esac
    case $keep in *" $tag "*) continue ;; esac
    dm_remove_image "$tag" > /dev/null 2>&1
  done < <(dm_image_tags)
  for dir in "$releases_dir"/*/; do
    [ -d "$dir" ] || continue
    rev=$(basename -- "$dir")
    case $keep_rev in *" $rev "*) continue ;; esac
    # Only finished jobs: a directory without a result (or with its job lock held) belongs to a release
    # that is starting or running right now.
    [ -f "$dir/result.json" ] || continue
    flock -n "$dir/job.lock" true 2>/dev/null || continue
    rm -rf -- "$dir"
  done
}

exists() { dm_state "$1" > /dev/null 2>&1; }

# Put the old stable container back in place and running (after a failed switch).
restore() {
  [ -n "$had_old" ] || return 0
  exists "$stable" && dm_remove "$stable" > /dev/null 2>&1
  dm_rename "$aside" "$stable" && dm_start "$stable" > /dev/null
}

exec 9>> "$lock_file" || finish Failed "cannot open the host lock $lock_file: make it writable by the login user"
flock -w "$lock_timeout" 9 || finish Failed "another release held the host lock for ${lock_timeout} s: retry later"

# A job killed in the middle of a switch leaves the old container aside. The new stable container is kept
# only if the switch had verified it (the marker names its container id); otherwise the old, verified one goes
# back into service.
if exists "$aside"; then
  s_cid=""
  if state=$(dm_state "$stable" 2>/dev/null); then read -r s_cid _ <<< "$state"; fi
  if [ -n "$s_cid" ] && [ "$(cat -- "$verified_file" 2>/dev/null)" = "$s_cid" ]; then
    dm_remove "$aside" > /dev/null 2>&1
  else
    [ -z "$s_cid" ] || dm_remove "$stable" > /dev/null 2>&1
    dm_rename "$aside" "$stable" && dm_start "$stable" > /dev/null 2>&1
  fi
fi
rm -f -- "$verified_file"

# A revision built from exactly what another one was built from (an env-only change) takes that image's id.
if ! dm_image_id > /dev/null 2>&1 && [ -n "$reuse_image" ]; then dm_tag_reused > /dev/null 2>&1; fi
want_iid=$(dm_image_id 2>/dev/null) || finish ImageMissing "image $image is not on the host: build or pull it first"

if state=$(dm_state "$stable" 2>/dev/null); then
  read -r _ s_iid s_running _ s_rev <<< "$state"
  if [ "$s_running" = true ] && [ "$s_iid" = "$want_iid" ] && [ "$s_rev" = "$revision" ] && probe "$port"; then
    prune
    finish Unchanged "$stable already runs revision $revision and answers on port $port"
  fi
fi

if ! disk_ok; then
  prune
  disk_ok || finish DiskFull "less than $min_free_mb MB free under $host_dir or the Docker data root: free disk space on the host"
fi

dm_remove "$candidate" > /dev/null 2>&1
cport=$(pick_port) || finish Failed "no free TCP port found for the candidate: too many listening sockets on the host"
t0=$(now_ms)
out=$(dm_run_candidate 2>&1) || finish Failed "docker run of the candidate failed: $(scrub "$out")"
candidate_ms=$(( $(now_ms) - t0 ))

if ! healthy_ms=$(wait_healthy "$cport"); then
  healthy_ms=-1
  logs=$(container_logs "$candidate")
  dm_remove "$candidate" > /dev/null 2>&1
  finish CandidateUnhealthy "candidate $candidate never answered http://127.0.0.1:$cport$health_path within ${startup_timeout} s; the running version was left untouched: fix the revision (see its logs)" "$logs"
fi

# Switch (Recreate): the candidate proved the revision; the old container stops and the new image takes over
# the stable name and port.
t0=$(now_ms)
dm_remove "$candidate" > /dev/null 2>&1
if exists "$stable"; then
  if ! out=$(dm_stop "$stable" 2>&1); then
    dm_start "$stable" > /dev/null 2>&1
    finish Failed "could not stop $stable ($(scrub "$out")); it keeps serving, and the release is retried: check the Docker engine"
  fi
  if ! dm_rename "$stable" "$aside" > /dev/null 2>&1; then
    dm_start "$stable" > /dev/null 2>&1
    finish SwitchFailed "could not rename $stable aside; it was started again: check the Docker engine"
  fi
  had_old=1
fi
if ! out=$(dm_run_stable 2>&1); then
  restore
  finish SwitchFailed "docker run of $stable failed, the previous container was restored: $(scrub "$out")"
fi
if ! wait_healthy "$port" > /dev/null; then
  logs=$(container_logs "$stable")
  restore
  finish SwitchFailed "$stable never answered http://127.0.0.1:$port$health_path within ${startup_timeout} s after the switch; the previous container was restored" "$logs"
fi
switch_ms=$(( $(now_ms) - t0 ))
if [ -n "$had_old" ]; then
  # Verified: from here a crash must keep the new container, not the old one.
  if state=$(dm_state "$stable" 2>/dev/null); then read -r s_cid _ <<< "$state"; printf '%s' "$s_cid" > "$verified_file"; fi
  dm_remove "$aside" > /dev/null 2>&1
  rm -f -- "$verified_file"
fi
prune
finish Released "$stable runs revision $revision on port $port"
