#!/usr/bin/env bash
# The install step shared by `npm start` and `npm test`: idempotent, each part skipped when already done.
#   1. Debian packages den drives as binaries (runc, mmdebstrap, nftables, ...)
#   2. gVisor runsc 2024-07-29 from Debian 13, extracted into den's tool directory (host apt sources untouched)
#   3. npm dependencies and the TypeScript build
#   4. the base image (Debian bookworm root built by mmdebstrap), cached by a hash of its recipe
#   5. the package cache shared read-only with sandboxes (npm cache + Python wheels for live previews)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DEN_STORE=${DEN_STORE:-/var/lib/den/store}
DEN_TOOLS=${DEN_TOOLS:-/var/lib/den/tools}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
skip() { printf '    %s\n' "$*"; }

[[ $(id -u) == 0 ]] || { echo "den's install step needs root (it installs Debian packages and mounts filesystems)" >&2; exit 1; }

step "1/5 Debian packages"
# chromium: the real browser of e2e/test/preview-browser.test.ts (driven headless through playwright-core);
# fonts-liberation: its recommended fonts, skipped by --no-install-recommends, so screenshots show text
PKGS=(runc mmdebstrap iproute2 nftables e2fsprogs zstd tini util-linux python3 make g++ ca-certificates postgresql chromium fonts-liberation)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "    installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  skip "all present"
fi

step "2/5 gVisor runsc (Debian 13 build, 2024-07-29)"
RUNSC=$DEN_TOOLS/runsc/usr/bin/runsc
if [[ -x $RUNSC ]]; then
  skip "$($RUNSC --version | head -1)"
else
  A=$DEN_TOOLS/apt
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$DEN_TOOLS/runsc"
  echo 'deb http://deb.debian.org/debian trixie main' >"$A/sources.list"
  O=(-o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::lists=$A/lists" -o "Dir::Cache=$A/cache")
  apt-get "${O[@]}" update -q
  (cd "$A" && rm -f runsc_*.deb && apt-get "${O[@]}" download runsc)
  dpkg-deb -x "$A"/runsc_*.deb "$DEN_TOOLS/runsc"
  "$RUNSC" --version | head -1
fi

step "3/5 npm dependencies and build"
lockhash=$(sha256sum package-lock.json 2>/dev/null | cut -c1-16 || echo none)
if [[ -f node_modules/.den-lock && $(cat node_modules/.den-lock) == "$lockhash" ]]; then
  skip "node_modules up to date"
else
  flock /tmp/den-npm.lock npm ci --no-audit --no-fund --loglevel=error
  echo "$lockhash" >node_modules/.den-lock
fi
npm run --silent build

step "4/5 base image"
DEN_STORE=$DEN_STORE bash scripts/base-image.sh

step "5/5 package cache for live previews"
bash scripts/package-cache.sh "$DEN_STORE/cache"
