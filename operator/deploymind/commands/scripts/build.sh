# Build: save the context tarball from stdin, check its sha256, build the image from exactly that tarball.
# Skips everything (and discards stdin) when the host already has the image. Prints one JSON line.
set -u
umask 077
preflight --dir "${needs[@]}"
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
# chmod first: a tarball may make a directory unreadable to its owner, and rm could not empty it.
trap 'chmod -R u+rwx -- "$work" 2>/dev/null; rm -rf -- "$work"' EXIT

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

# Nothing may lead out of the extracted tree: a symlinked context or Dockerfile (or any symlink a COPY follows)
# would read the host's files, the login user's SSH keys say, into the image or into the build's output. The
# operator refuses such a commit before sending it; the host holds the line too. Messages name the link and its
# target as the commit writes them, never what lies behind.
tree=$(realpath -e -- "$work/tree") || finish Failed "cannot resolve the build directory $work/tree"
inside() {  # path: true when it is the tree or under it
  case "$1" in "$tree" | "$tree"/*) return 0 ;; esac
  return 1
}
# A directory the login user cannot read would hide its symlinks from find, not from docker (Git never writes one).
find "$tree" -type l -print0 > "$work/links" 2>/dev/null ||
  finish UnsafeSource "the tree has a directory the login user cannot read, so its symlinks cannot be checked: Git never writes one; check the tarball's origin"
while IFS= read -r -d '' link; do
  dest=$(realpath -m -- "$link" 2>/dev/null) || dest=/
  inside "$dest" || finish UnsafeSource \
    "the symlink ${link#"$tree"/} -> $(readlink -- "$link") leads outside the repository: remove it or point it inside the repository"
done < "$work/links"
context_dir=$(realpath -m -- "$tree/$context_subdir" 2>/dev/null) || context_dir=/
inside "$context_dir" || finish UnsafeSource "build context $context_subdir leads outside the repository: fix spec.build.context"
dockerfile_path=$(realpath -m -- "$tree/$context_subdir/$dockerfile" 2>/dev/null) || dockerfile_path=/
inside "$dockerfile_path" || finish UnsafeSource "$dockerfile leads outside the repository: fix spec.build.dockerfile"
[ -d "$context_dir" ] || finish Failed "build context $context_subdir is not a directory in this commit: fix spec.build.context"
[ -f "$dockerfile_path" ] || finish Failed "$dockerfile is not a file in the build context $context_subdir: fix spec.build.dockerfile"

out=$(dm_build 2>&1) || finish BuildFailed "docker build failed: fix the Dockerfile or the code (see the last lines of its output)" \
  "$(json_lines "$(tail -n "$log_tail" <<< "$out")")"
finish Built "built $image"
