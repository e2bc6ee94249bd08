# Cleanup on delete: every container labelled with the object's uid, its images and its files on the host.
# Waits for the host lock, so a release of the object in flight finishes first. Prints one JSON line.
# Containers are removed at once, without their stop grace: a delete must finish within the operator's
# cleanup timeout whatever grace the app asked for, and the app is going away for good.
set -u
preflight "${needs[@]}"
if [ -d "$host_dir" ]; then
  exec 9>> "$lock_file" && flock -w "$lock_timeout" 9 || {
    printf '{"result":"Failed","containers":0,"images":0,"message":%s}\n' \
      "$(json_str "could not take the host lock $lock_file within $lock_timeout s (held by a release, or not writable by the login user): retry later")"
    exit 0
  }
fi
containers=0
images=0
failed=""
while IFS= read -r id; do
  [ -n "$id" ] || continue
  if dm_remove "$id" > /dev/null 2>&1; then containers=$((containers + 1)); else failed+=" container $id"; fi
done < <(dm_containers)
while IFS= read -r tag; do
  case $tag in "" | *:"<none>") continue ;; esac
  if dm_remove_image "$tag" > /dev/null 2>&1; then images=$((images + 1)); else failed+=" image $tag"; fi
done < <(dm_image_tags)
rm -rf -- "$object_dir" || failed+=" directory $object_dir"
if [ -n "$failed" ]; then
  printf '{"result":"Failed","containers":%d,"images":%d,"message":%s}\n' "$containers" "$images" \
    "$(json_str "could not remove:$failed; retry the delete, or remove them by hand")"
else
  printf '{"result":"Cleaned","containers":%d,"images":%d,"message":%s}\n' "$containers" "$images" \
    "$(json_str "removed $containers containers, $images images and $object_dir")"
fi
