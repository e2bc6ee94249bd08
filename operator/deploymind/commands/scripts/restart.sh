# Restart the stable container (a failing app after its bake: restarted, never reverted). Prints one JSON line.
set -u
preflight "${needs[@]}"
if ! dm_state > /dev/null 2>&1; then
  printf '{"result":"Missing","message":%s}\n' "$(json_str "$stable does not exist on the host: the next release recreates it")"
elif out=$(dm_restart 2>&1); then
  printf '{"result":"Restarted","message":%s}\n' "$(json_str "$stable restarted")"
else
  printf '{"result":"Failed","message":%s}\n' "$(json_str "docker restart $stable failed: $out")"
fi
