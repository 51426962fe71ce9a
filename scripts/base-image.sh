#!/usr/bin/env bash
# Builds den's base image: a Debian bookworm root from mmdebstrap with the tools a dev sandbox needs and a user
# `user` (uid 1000, passwordless sudo, home /home/user). The result is one content-addressed layer (sha256 of the
# root's tar) under $DEN_STORE/layers and a manifest $DEN_STORE/images/base.json. It is rebuilt only when this
# recipe changes: the manifest records the recipe's hash.
set -euo pipefail
DEN_STORE=${DEN_STORE:-/var/lib/den/store}
PACKAGES=bash,coreutils,procps,ca-certificates,curl,git,python3,python3-venv,python3-pip,nodejs,npm,sudo,less,nano,iproute2,iputils-ping,openssh-client,xz-utils,unzip,file,locales
recipe_hash=$( (cat "$0"; echo "$PACKAGES") | sha256sum | cut -c1-16)
manifest=$DEN_STORE/images/base.json
if [[ -f $manifest ]] && grep -q "\"recipe\": *\"$recipe_hash\"" "$manifest"; then
  echo "    base image up to date (recipe $recipe_hash)"
  exit 0
fi
mkdir -p "$DEN_STORE/layers/sha256" "$DEN_STORE/images" "$DEN_STORE/tmp"
work=$(mktemp -d "$DEN_STORE/tmp/base.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "    building Debian bookworm root with mmdebstrap (recipe $recipe_hash); this takes a few minutes"
SOURCE_DATE_EPOCH=1700000000 mmdebstrap --variant=minbase --include="$PACKAGES" \
  --aptopt='Acquire::Retries "3"' \
  --customize-hook='chroot "$1" useradd --create-home --uid 1000 --shell /bin/bash user' \
  --customize-hook='echo "user ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/user" && chmod 0440 "$1/etc/sudoers.d/user"' \
  --customize-hook='echo den > "$1/etc/hostname"; rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages' \
  bookworm "$work/root.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
echo "    hashing and unpacking the layer"
digest=$(sha256sum "$work/root.tar" | cut -d' ' -f1)
layer=$DEN_STORE/layers/sha256/$digest
if [[ ! -d $layer ]]; then
  mkdir "$work/layer"
  tar -xf "$work/root.tar" -C "$work/layer" --numeric-owner --xattrs --xattrs-include='*'
  mv "$work/layer" "$layer"
fi
cat >"$work/base.json" <<JSON
{
  "name": "base",
  "recipe": "$recipe_hash",
  "layers": ["sha256:$digest"],
  "config": {
    "user": "user",
    "workdir": "/home/user",
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
  },
  "createdAt": "$(date -u +%FT%TZ)"
}
JSON
mv "$work/base.json" "$manifest"
echo "    base image sha256:$digest ($(du -sh "$layer" | cut -f1))"
