# Health tick: probe the app, inspect its stable container, sample its CPU and memory. Prints one JSON line.
set -u
preflight "${needs[@]}"
out=$(curl -s -o /dev/null --max-time "$probe_timeout" -w '%{http_code} %{time_total} %{exitcode} %{errormsg}' \
  "http://127.0.0.1:$port$health_path" 2>/dev/null)
read -r code total exitcode error <<< "$out"
[[ ${code:-} =~ ^[0-9]+$ ]] || code=0
[[ ${exitcode:-} =~ ^[0-9]+$ ]] || exitcode=1
whole=${total%%.*}
fraction=${total#*.}000000
[[ $whole =~ ^[0-9]+$ ]] || whole=0
[[ ${fraction:0:6} =~ ^[0-9]{6}$ ]] || fraction=000000
micros=$(( 10#$whole * 1000000 + 10#${fraction:0:6} ))
latency=$(printf '%d.%03d' $(( micros / 1000 )) $(( micros % 1000 )))
[ "$exitcode" = 0 ] && error=""

container=$(dm_inspect 2>/dev/null) || container=null
expected=$(dm_image_id 2>/dev/null) || expected=""
stats=null
case $container in
  *'"running":true'*)
    if [ -n "$stats_file" ]; then
      # The previous tick's sample; the next one is taken in the background so the probe never waits ~2 s for it.
      [ -s "$stats_file" ] && stats=$(cat -- "$stats_file")
      mkdir -p -- "${stats_file%/*}" 2>/dev/null
      # One sampler at a time, each bounded (dm_stats runs under `timeout`): a hung engine never piles them up.
      ( flock -n 9 || exit 0; dm_stats > "$stats_file.tmp" 2>/dev/null && mv -f -- "$stats_file.tmp" "$stats_file" ) \
        9> "$stats_file.lock" < /dev/null > /dev/null 2>&1 &
    else
      stats=$(dm_stats 2>/dev/null) || stats=null
    fi ;;
esac
[ -n "$stats" ] || stats=null

printf '{"probe":{"status":%d,"latency_ms":%s,"curl_exit":%d,"error":%s},"container":%s,"expected_image":%s,"expected_image_id":%s,"stats":%s}\n' \
  "$((10#$code))" "$latency" "$exitcode" "$(json_str "${error:-}")" "$container" "$(json_str "$image")" \
  "$(json_str "$expected")" "$stats"
