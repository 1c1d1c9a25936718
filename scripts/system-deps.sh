#!/usr/bin/env bash
# System tools some tests use; installed when we are root and they are missing, skipped otherwise
# (the tests that need them then skip with a reason). Never fails the build on its own. Idempotent.
set -u
need=()
command -v route >/dev/null 2>&1 || need+=(net-tools)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# BIRD nodes and ToR peers (tests/integration/test_bird_interop.py): Debian's BIRD 2 and GoBGP.
{ command -v bird >/dev/null 2>&1 || [ -x /usr/sbin/bird ]; } || need+=(bird2)
command -v gobgpd >/dev/null 2>&1 || need+=(gobgpd)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} for the tests" >&2
  # The packages ship services (bird.service, gobgpd.service) that would run in the host's own network
  # namespace with their default configs: keep them from starting (policy-rc.d 101 = "action forbidden").
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "could not install ${need[*]}; tests needing them will skip" >&2
  [ "$made_policy" = 1 ] && rm -f "$policy"
fi
exit 0
