# The ssm transport's wrapper around one script (POSIX sh; transport/ssm.py sets the dm_* variables above and
# writes the script into "$dm_dir/script" between dm_start and dm_run). SSM gives a command no stdin and keeps
# 24,000 characters of its output: the payload is fetched here (S3 presigned URL, or Parameter Store with the
# instance's own role), checked against its sha256 and put on the script's stdin; the script's output goes to
# files, and only their tails are printed, so its final JSON line survives. A line starting with $dm_nonce is the
# wrapper's own failure ("<nonce> <reason> <message>"): the script did not run.
set -u

dm_fail() {  # reason message
  printf '%s %s %s\n' "$dm_nonce" "$1" "$2"
  exit 1
}

dm_why() {  # the last error output of a fetch, on one line
  tr '\n' ' ' < "$dm_dir/why" | tail -c 300
}

dm_fetch_url() {
  if command -v curl > /dev/null 2>&1; then
    curl -fsS --retry 3 --connect-timeout 20 -o "$dm_dir/in" "$dm_url" 2> "$dm_dir/why"
  elif command -v wget > /dev/null 2>&1; then
    wget -q -T 20 -t 3 -O "$dm_dir/in" "$dm_url" 2> "$dm_dir/why"
  else
    dm_fail "$dm_not_ready" "neither curl nor wget is installed on the instance: install one (the $dm_what is downloaded with it)"
  fi || dm_download_failed
  dm_want=$dm_sha256
}

# $dm_url_expires is when the presigned URL stops working (epoch seconds, by the operator's clock; 0: unknown).
dm_download_failed() {
  dm_now=$(date +%s 2> /dev/null) || dm_now=0
  if [ "$dm_url_expires" -gt 0 ] && [ "$dm_now" -gt "$dm_url_expires" ]; then
    dm_fail "$dm_not_delivered" \
      "could not download the $dm_what from S3: its presigned URL, valid for $dm_url_expiry_s s after the command was sent, had expired $((dm_now - dm_url_expires)) s before the instance fetched it (its SSM agent started the command late): the call is retried; if this repeats, raise DEPLOYMIND_SSM_PRESIGN_EXPIRY_SECONDS"
  fi
  dm_fail "$dm_not_delivered" \
    "could not download the $dm_what from S3 ($(dm_why)): the call is retried"
}

# The AWS CLI prints the parameter's value and a newline; the value is the payload followed by its sha256 (hex),
# which is never in the command itself. The endpoint comes from the instance's own environment: AWS CLIs before
# 2.13 do not read AWS_ENDPOINT_URL themselves.
dm_fetch_parameter() {
  command -v aws > /dev/null 2>&1 ||
    dm_fail "$dm_not_ready" "the AWS CLI (aws) is not installed on the instance: install it (the $dm_what is read from Parameter Store with it)"
  dm_ep=${AWS_ENDPOINT_URL_SSM:-${AWS_ENDPOINT_URL:-}}
  if [ -n "$dm_ep" ]; then set -- --endpoint-url "$dm_ep"; else set --; fi
  AWS_PAGER='' aws ssm get-parameter --region "$dm_region" --name "$dm_parameter" --with-decryption \
    --query Parameter.Value --output text "$@" > "$dm_dir/raw" 2> "$dm_dir/why" ||
    dm_fail "$dm_not_delivered" \
      "could not read the $dm_what from Parameter Store ($(dm_why)): the instance role needs ssm:GetParameter on $dm_parameter and kms:Decrypt for its key"
  dm_n=$(wc -c < "$dm_dir/raw")
  [ "$dm_n" -gt 64 ] || dm_fail "$dm_not_delivered" "the $dm_what read from Parameter Store is cut short; the call is retried"
  head -c $((dm_n - 65)) "$dm_dir/raw" > "$dm_dir/in"
  dm_want=$(tail -c 65 "$dm_dir/raw" | head -c 64)
  rm -f -- "$dm_dir/raw"
}

dm_start() {
  dm_dir=$(mktemp -d /dev/shm/deploymind.XXXXXX 2> /dev/null || mktemp -d 2> /dev/null) ||
    dm_fail "$dm_not_ready" "mktemp -d failed: the instance needs a writable /tmp"
  trap 'rm -rf -- "$dm_dir"' EXIT
  trap 'exit 143' TERM HUP INT
  case $dm_via in
    none) return 0 ;;
    url) dm_fetch_url ;;
    parameter) dm_fetch_parameter ;;
  esac
  command -v sha256sum > /dev/null 2>&1 ||
    dm_fail "$dm_not_ready" "sha256sum (coreutils) is not installed on the instance: install coreutils"
  dm_got=$(sha256sum < "$dm_dir/in") || dm_fail "$dm_not_ready" "sha256sum failed on the instance"
  [ "${dm_got%% *}" = "$dm_want" ] ||
    dm_fail "$dm_not_delivered" "the $dm_what arrived cut short or altered (its sha256 differs from the one sent); the call is retried"
}

dm_run() {
  if [ "$dm_via" = none ]; then exec 3< /dev/null; else exec 3< "$dm_dir/in"; fi
  # Unlinked while open: the payload never outlives the script on the instance's disk, even if this is killed.
  rm -f -- "$dm_dir/in"
  sh "$dm_dir/script" <&3 3<&- > "$dm_dir/out" 2> "$dm_dir/err"
  dm_rc=$?
  exec 3<&-
  dm_size=$(wc -c < "$dm_dir/out")
  if [ "$dm_size" -gt "$dm_stdout_keep" ]; then
    printf 'deploymind: the first %s of %s bytes of output were cut (SSM keeps 24,000 characters)\n' \
      "$((dm_size - dm_stdout_keep))" "$dm_size" >&2
  fi
  tail -c "$dm_stdout_keep" "$dm_dir/out"
  tail -c "$dm_stderr_keep" "$dm_dir/err" >&2
  exit "$dm_rc"
}
