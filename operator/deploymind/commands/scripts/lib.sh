# Helpers shared by every host script (bash). The generated header before this defines the parameters.
export LC_ALL=C

# A JSON string literal of $1: backslash, quote and the control characters JSON forbids are escaped or dropped.
json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/}
  s=${s//$'\n'/\\n}
  s=${s//[$'\001'-$'\037']/}
  printf '"%s"' "$s"
}

# A JSON array of the lines of $1.
json_lines() {
  local out="" line sep=""
  while IFS= read -r line || [ -n "$line" ]; do
    out+="$sep$(json_str "$line")"
    sep=","
  done <<< "$1"
  [ -n "$1" ] || out=""
  printf '[%s]' "$out"
}

# Milliseconds since the epoch (bash 5's EPOCHREALTIME; GNU date otherwise).
now_ms() {
  local t=${EPOCHREALTIME:-}
  if [ -n "$t" ]; then
    t=${t//[.,]/}
    echo $(( 10#$t / 1000 ))
  else
    date +%s%3N
  fi
}

# Seconds with three decimals, as a JSON number, of a duration in milliseconds.
secs() {
  printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 ))
}

# Free space in MB of the filesystem holding $1.
free_mb() {
  local line avail
  line=$(df -Pk -- "$1" 2>/dev/null | tail -n 1) || return 1
  read -r _ _ _ avail _ <<< "$line"
  [[ $avail =~ ^[0-9]+$ ]] || return 1
  echo $(( avail / 1024 ))
}

# Sleep a fraction of a second where sleep allows it.
nap() {
  sleep "$1" 2>/dev/null || sleep 1
}

# The script's first step (commands/preflight.py): every command it needs ($@) is installed and, with --dir
# first, the host directory exists (made if need be) and the login user can write it. Otherwise print one
# HostNotReady line naming what is missing and which host directory the script would use, and stop: nothing has
# started.
preflight() {
  local dir="" tool missing=() named=""
  if [ "${1:-}" = --dir ]; then dir=1; shift; fi
  for tool in "$@"; do
    command -v -- "$tool" > /dev/null 2>&1 && continue
    missing+=("$tool")
    case $tool in
      sha256sum) named+=", sha256sum (package coreutils)" ;;
      flock) named+=", flock (package util-linux)" ;;
      docker) named+=", docker (Docker Engine, usable by the login user)" ;;
      *) named+=", $tool" ;;
    esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    not_ready "the host lacks ${named#, }: install it for the login user $(id -un 2>/dev/null); nothing was started, and DeployMind retries with backoff" \
      "${missing[@]}"
  fi
  if [ -n "$dir" ] && ! { mkdir -p -- "$host_dir" 2> /dev/null && [ -w "$host_dir" ]; }; then
    not_ready "the login user $(id -un 2>/dev/null) cannot create or write the host directory $host_dir: create it for that user, or set the operator's --host-dir or the target's hostDir to a directory it can write; nothing was started"
  fi
}

not_ready() {  # message [missing command…]
  local message=$1 names=""
  shift
  [ $# -eq 0 ] || names=$(printf '%s\n' "$@")
  cat > /dev/null 2>&1  # the payload, unread: a transport still writing it must not meet a closed pipe
  printf '{"result":"HostNotReady","missing":%s,"host_dir":%s,"message":%s}\n' \
    "$(json_lines "$names")" "$(json_str "${host_dir:-}")" "$(json_str "$message")"
  exit 0
}
