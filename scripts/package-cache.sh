#!/usr/bin/env bash
# Fills den's shared package cache: the directory every sandbox sees READ-ONLY at /opt/den-cache, so that live
# previews install their packages without the internet (app-preview/detect.ts plans the install steps against it).
#   npm/  an npm cache (cacache) holding every package the node fixtures need, both as their lockfiles pin them
#         (`npm ci --offline`) and as a fresh resolution of their package.json (`npm install --offline` of a
#         project without a lockfile needs the registry metadata too)
#   pip/  a wheelhouse for flask and fastapi + uvicorn and their dependencies, for `pip install --no-index
#         --find-links`. PyPI is not reachable from den's hosts, so the wheels are rebuilt from Debian bookworm's
#         python3-* packages (the sandbox image is bookworm with its python3.11): each .deb is unpacked and its
#         dist-packages tree is zipped with a dist-info into a wheel.
# Idempotent: skipped when the stamp (a hash of this script and of the fixtures' manifests and lockfiles) matches.
# The new content is built beside the cache and moved in at the end, so a failed run leaves the old cache intact.
# Usage: scripts/package-cache.sh [cache-dir]   (default /var/lib/den/store/cache)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-/var/lib/den/store/cache}
FIXTURES=e2e/fixtures/apps
# Debian packages whose wheels (with their python3-* dependency closure) go into pip/. blinker and dotenv are
# optional extras of Flask and uvicorn that projects commonly list.
PY_ROOTS=(python3-flask python3-fastapi python3-uvicorn python3-blinker python3-dotenv)
# The npm of the sandbox image (Debian bookworm's npm package).
SANDBOX_NPM=9.2.0

[[ $(id -u) == 0 ]] || { echo "package-cache.sh needs root (it writes $CACHE and runs apt-get download)" >&2; exit 1; }
for tool in npm python3 apt-get dpkg-deb sha256sum flock; do
  command -v "$tool" >/dev/null || { echo "package-cache.sh needs $tool; install it with apt-get" >&2; exit 1; }
done

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

recipe=$( (cat "$0"; printf '%s\n' "${PY_ROOTS[@]}" "$SANDBOX_NPM"
  find "$FIXTURES" -maxdepth 2 \( -name package.json -o -name package-lock.json -o -name requirements.txt \) \
    -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
if [[ -f $CACHE/stamp && $(cat "$CACHE/stamp") == "$recipe" && -d $CACHE/npm && -d $CACHE/pip ]]; then
  echo "    package cache up to date (recipe $recipe)"
  exit 0
fi

work=$(mktemp -d "$CACHE.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

echo "    npm: caching the node fixtures' packages with npm $SANDBOX_NPM"
# The cache is filled by the sandbox image's npm version, not the host's: an offline install without a lockfile
# finds registry metadata in the cache only under the Accept header it was fetched with, and npm 9 asks for the
# abbreviated document ("application/vnd.npm.install-v1+json; ...") where npm 11 asks for "application/json"
# (make-fetch-happen's CachePolicy.satisfies compares the media types). Tarballs are found by integrity either way.
# --ignore-scripts: only the cache is wanted here; install scripts run in the sandbox at `npm ci` time.
NPM=(npx --yes "npm@$SANDBOX_NPM" --cache "$work/npm" --ignore-scripts --no-audit --no-fund --no-update-notifier
  --loglevel=error)
for manifest in "$FIXTURES"/*/package.json; do
  dir=$(dirname "$manifest")
  [[ -f $dir/package-lock.json ]] || { echo "$dir has no package-lock.json; generate it with npm install" >&2; exit 1; }
  tmp=$(mktemp -d "$work/project.XXXXXX")
  cp "$dir/package.json" "$dir/package-lock.json" "$tmp/"
  (cd "$tmp" && "${NPM[@]}" ci >/dev/null && rm -rf node_modules package-lock.json &&
    "${NPM[@]}" install --no-package-lock >/dev/null)
  rm -rf "$tmp"
  echo "      $(basename "$dir")"
done
rm -rf "$work/npm/_logs" "$work/npm/_update-notifier-last-checked"

echo "    pip: building wheels from Debian bookworm packages (${PY_ROOTS[*]})"
# A private apt configuration with bookworm's sources: the wheels must match the sandbox image (bookworm,
# python3.11), whatever release the host runs. Nothing is installed on the host.
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$work/debs"
cat >"$apt_dir/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
APT=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir" -o "Dir::State::status=/dev/null" -o APT::Architecture=amd64 -o Debug::NoLocking=1)
apt-get "${APT[@]}" update -qq
mapfile -t closure < <(apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances --no-pre-depends "${PY_ROOTS[@]}" | grep -E '^python3-' | sort -u)
# _apt cannot write into a root-owned temp dir; the download is unsandboxed on purpose.
(cd "$work/debs" && apt-get "${APT[@]}" -o APT::Sandbox::User=root download -qq "${closure[@]}")
mkdir -p "$work/pip"
python3 - "$work/debs" "$work/pip" <<'PYTHON'
"""Turns each python3-*.deb into a wheel: its dist-packages tree plus a dist-info built from the package's own
metadata. Debian strips the unconditional requirements from egg-info metadata (dh_python turns them into Depends)
and keeps upstream pins it has since patched around (fastapi 0.92 pins starlette<0.26, bookworm ships 0.26.1), so
Requires-Dist is rebuilt from the .deb's Depends, unversioned: the wheelhouse holds exactly the versions Debian
tested together. Extras are dropped: their packages are not in the wheelhouse, and a requirement such as
uvicorn[standard] then installs the plain package (pip warns) instead of failing."""
import base64, hashlib, os, re, subprocess, sys, tempfile, zipfile

debs_dir, out_dir = sys.argv[1], sys.argv[2]
SITE = "usr/lib/python3/dist-packages"
PY = (3, 11)
ZIP_TIME = (2023, 1, 1, 0, 0, 0)  # fixed timestamps: the same debs give byte-identical wheels


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], check=True, capture_output=True, text=True).stdout.strip()


def read_metadata(meta_dir):
    for name in ("METADATA", "PKG-INFO"):
        path = os.path.join(meta_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return f.read()
    raise SystemExit(f"{meta_dir} has no METADATA or PKG-INFO")


def header(metadata, key):
    match = re.search(rf"^{key}: *(.+)$", metadata, re.M)
    return match.group(1).strip() if match else None


def python_alternative_holds(alt):
    """`python3 (>> 3.10)` in a Depends alternative: true when the sandbox's python3.11 satisfies it."""
    match = re.fullmatch(r"python3(?::any)? \((>>|>=|<<|<=|=) ([0-9.]+)[^)]*\)", alt)
    if not match:
        return False
    op, version = match.groups()
    want = tuple(int(x) for x in version.split(".")[:2])
    return {">>": PY > want, ">=": PY >= want, "<<": PY < want, "<=": PY <= want, "=": PY == want}[op]


debs = {}
for file in sorted(os.listdir(debs_dir)):
    if file.endswith(".deb"):
        path = os.path.join(debs_dir, file)
        debs[deb_field(path, "Package")] = path

unpacked, dist_names = {}, {}
for package, deb in debs.items():
    root = tempfile.mkdtemp(prefix=package + ".", dir=out_dir + "/..")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    site = os.path.join(root, SITE)
    metas = [e for e in os.listdir(site) if e.endswith((".dist-info", ".egg-info"))] if os.path.isdir(site) else []
    if len(metas) != 1:
        raise SystemExit(f"{package}: expected one .dist-info/.egg-info in {SITE}, found {metas}")
    metadata = read_metadata(os.path.join(site, metas[0]))
    unpacked[package] = (site, metas[0], metadata)
    dist_names[package] = header(metadata, "Name")

for package, (site, meta_name, metadata) in unpacked.items():
    requires = []
    for group in filter(None, (g.strip() for g in deb_field(debs[package], "Depends").split(","))):
        alternatives = [a.strip() for a in group.split("|")]
        if any(python_alternative_holds(a) for a in alternatives):
            continue
        names = [re.match(r"[^ (:]+", a).group(0) for a in alternatives]
        wanted = [n for n in names if n.startswith("python3-")]
        if not wanted:
            continue  # python3, libc6, ...: provided by the sandbox image
        chosen = next((n for n in wanted if n in dist_names), None)
        if chosen is None:
            raise SystemExit(f"{package} depends on {group}, which is not among the downloaded packages")
        requires.append(dist_names[chosen])

    name, version = dist_names[package], header(metadata, "Version")
    head, _, body = metadata.partition("\n\n")
    lines = [ln for ln in head.split("\n") if not ln.startswith(("Requires-Dist:", "Provides-Extra:"))]
    lines += [f"Requires-Dist: {r}" for r in sorted(set(requires))]
    new_metadata = "\n".join(lines) + "\n\n" + body

    files = []
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and d != meta_name)
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            if not os.path.exists(full):
                # Debian swaps bundled copies of JS libraries for symlinks into libjs-* packages (werkzeug's
                # debugger jquery.js); those packages are not python3-* and the link would dangle in a venv.
                print(f"      skipped dangling symlink {package}: {os.path.relpath(full, site)}")
                continue
            files.append((os.path.relpath(full, site), full))
    compiled = any(rel.endswith(".so") for rel, _ in files)
    # A wheel with a CPython extension is tagged for the one interpreter and platform its .so was built for.
    tag = "cp311-cp311-linux_x86_64" if compiled else "py3-none-any"
    escaped = re.sub(r"[-_.]+", "_", name)
    dist_info = f"{escaped}-{version}.dist-info"
    extra = {
        f"{dist_info}/METADATA": new_metadata.encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: den package-cache.sh\nRoot-Is-Purelib: {str(not compiled).lower()}\n"
            f"Tag: {tag}\n"
        ).encode(),
    }
    for kept in ("entry_points.txt", "top_level.txt"):
        path = os.path.join(site, meta_name, kept)
        if os.path.exists(path):
            with open(path, "rb") as f:
                extra[f"{dist_info}/{kept}"] = f.read()

    record = []
    wheel_path = os.path.join(out_dir, f"{escaped}-{version}-{tag}.whl")

    def add(zf, arcname, data, mode=0o644):
        info = zipfile.ZipInfo(arcname, ZIP_TIME)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")

    with zipfile.ZipFile(wheel_path, "w") as zf:
        for rel, full in files:
            with open(full, "rb") as f:
                add(zf, rel, f.read(), 0o755 if rel.endswith(".so") else 0o644)
        for arcname, data in extra.items():
            add(zf, arcname, data)
        record.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", ZIP_TIME)
        info.external_attr = (0o100644) << 16
        zf.writestr(info, "\n".join(record) + "\n")
    print(f"      {os.path.basename(wheel_path)}  requires: {', '.join(sorted(set(requires))) or '-'}")
PYTHON
rm -rf "$work"/python3-*.* "$work/debs" "$apt_dir"

# Sandboxes read the cache as uid 1000 through a read-only bind mount.
chmod -R a+rX,go-w "$work/npm" "$work/pip"
for part in npm pip; do
  rm -rf "${CACHE:?}/$part.old"
  [[ -e $CACHE/$part ]] && mv "$CACHE/$part" "$CACHE/$part.old"
  mv "$work/$part" "$CACHE/$part"
  rm -rf "${CACHE:?}/$part.old"
done
echo "$recipe" >"$CACHE/stamp"
echo "    package cache ready in $CACHE: npm $(du -sh "$CACHE/npm" | cut -f1), pip $(ls "$CACHE/pip" | wc -l) wheels"
