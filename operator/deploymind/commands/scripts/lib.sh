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
