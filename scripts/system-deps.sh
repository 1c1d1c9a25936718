#!/usr/bin/env bash
# System tools some tests use; installed when we are root and they are missing, skipped otherwise
# (the tests that need them then skip with a reason). Never fails the build on its own.
set -u
need=()
command -v route >/dev/null 2>&1 || need+=(net-tools)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} for the tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "could not install ${need[*]}; tests needing them will skip" >&2
fi
exit 0
