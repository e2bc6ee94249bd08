# Build: save the context tarball from stdin, check its sha256, build the image from exactly that tarball.
# Skips everything (and discards stdin) when the host already has the image. Prints one JSON line.
set -u
umask 077
start_ms=$(now_ms)

finish() {  # result message [logs as a JSON array]
  local iid
  iid=$(dm_image_id 2>/dev/null) || iid=""
  printf '{"result":%s,"revision":%s,"image":%s,"image_id":%s,"build_s":%s,"logs":%s,"message":%s}\n' \
    "$(json_str "$1")" "$(json_str "$revision")" "$(json_str "$image")" "$(json_str "$iid")" \
    "$(secs $(( $(now_ms) - start_ms )))" "${3:-[]}" "$(json_str "$2")"
  exit 0
}

if dm_image_id > /dev/null 2>&1; then
  cat > /dev/null
  finish Present "the host already has $image"
fi

if ! mkdir -p -- "$builds_dir" || ! work=$(mktemp -d "$builds_dir/$revision.XXXXXX"); then
  cat > /dev/null
  finish Failed "cannot create a build directory under $builds_dir: give the login user a writable host directory"
fi
trap 'rm -rf -- "$work"' EXIT

free=$(free_mb "$builds_dir") || free=$min_free_mb
if [ "$free" -lt "$min_free_mb" ]; then
  cat > /dev/null
  finish DiskFull "only $free MB free under $builds_dir (need $min_free_mb MB): free disk space on the host"
fi

cat > "$work/context.tar"
actual=$(sha256sum -- "$work/context.tar")
actual=${actual%% *}
[ "$actual" = "$digest" ] || finish DigestMismatch \
  "the context tarball that arrived has sha256 $actual, not $digest: it was cut short or altered on the way; retry the build"

mkdir -- "$work/tree"
# -p: the files keep the modes the commit gives them (this script's umask would make them private to the
# login user, and an image's non-root USER could not run them).
out=$(tar -x -p -f "$work/context.tar" -C "$work/tree" 2>&1) || finish Failed "the context tarball does not extract: $out"
context_dir="$work/tree/$context_subdir"
dockerfile_path="$context_dir/$dockerfile"
[ -d "$context_dir" ] || finish Failed "build context $context_subdir is not a directory in this commit: fix spec.build.context"
[ -f "$dockerfile_path" ] || finish Failed "$dockerfile is not a file in the build context $context_subdir: fix spec.build.dockerfile"

out=$(dm_build 2>&1) || finish BuildFailed "docker build failed: fix the Dockerfile or the code (see the last lines of its output)" \
  "$(json_lines "$(tail -n "$log_tail" <<< "$out")")"
finish Built "built $image"
