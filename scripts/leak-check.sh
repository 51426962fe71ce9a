#!/usr/bin/env bash
# Fails when a test left something behind on the machine: containers in den's or the default runtime roots,
# overlay or den mounts, loop devices, network namespaces, den bridges and nft tables, gVisor processes, den-spawn
# helpers, den cgroups.
set -uo pipefail
RUNSC=${DEN_RUNSC:-/var/lib/den/tools/runsc/usr/bin/runsc}
left=()
command -v runc >/dev/null && n=$(runc list --quiet 2>/dev/null | grep -c .) && ((n > 0)) && left+=("$n runc container(s) in the default root")
[[ -x $RUNSC ]] && n=$($RUNSC list --quiet 2>/dev/null | grep -c .) && ((n > 0)) && left+=("$n runsc container(s) in the default root")
n=$(grep -c ' overlay ' /proc/mounts); ((n > 0)) && left+=("$n overlay mount(s)")
n=$(grep -c '/sandboxes/' /proc/mounts); ((n > 0)) && left+=("$n sandbox mount(s)")
n=$(losetup -a 2>/dev/null | grep -c .); ((n > 0)) && left+=("$n loop device(s): $(losetup -a | head -3 | tr '\n' ' ')")
n=$(ip netns list 2>/dev/null | grep -c .); ((n > 0)) && left+=("$n network namespace(s)")
n=$(ip -o link show type bridge 2>/dev/null | grep -cE ': (den|dt)[a-z0-9]*[:@]'); ((n > 0)) && left+=("$n den bridge(s): $(ip -o link show type bridge | grep -oE ': (den|dt)[a-z0-9]*' | tr -d ': ' | tr '\n' ' ')")
n=$(nft list tables 2>/dev/null | grep -cE ' (den|dt)[a-z0-9]*$'); ((n > 0)) && left+=("$n den nft table(s)")
n=$(pgrep -c -f 'runsc-sandbox|runsc-gofer|runsc-sentry'); ((n > 0)) && left+=("$n gVisor process(es)")
n=$(pgrep -c -f '/.den/bin/node|den-agent'); ((n > 0)) && left+=("$n agent process(es)")
# den-spawn helpers (the agent's, and the daemon's own for its tools) end with their owner; zombies wait for init.
n=$(ps -eo stat=,args= | awk '$1 !~ /^Z/ && $2 ~ /den-spawn$/' | grep -c .); ((n > 0)) && left+=("$n den-spawn process(es)")
n=$(find /sys/fs/cgroup/memory/den -mindepth 1 -maxdepth 1 -type d 2>/dev/null | grep -c .); ((n > 0)) && left+=("$n den memory cgroup(s)")
if ((${#left[@]})); then
  echo "leak check FAILED: the tests left these behind:"
  printf ' - %s\n' "${left[@]}"
  exit 1
fi
echo "leak check passed: no containers, mounts, loop devices, netns or sandbox processes left"
