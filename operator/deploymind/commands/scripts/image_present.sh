# Does the host have the image? Prints one JSON line.
set -u
preflight "${needs[@]}"
if iid=$(dm_image_id 2>/dev/null); then
  printf '{"result":"Present","image":%s,"image_id":%s}\n' "$(json_str "$image")" "$(json_str "$iid")"
else
  printf '{"result":"Absent","image":%s,"image_id":""}\n' "$(json_str "$image")"
fi
