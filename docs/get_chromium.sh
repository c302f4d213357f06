#!/usr/bin/env bash
# Unpack Debian's Chromium, and the libraries it needs that a minimal Debian 12 (bookworm) Python
# image lacks, into .chromium/ without root and without installing anything system-wide; write
# the wrapper .chromium/chromium that docs/check_site.py finds. Needs apt-get and its package
# index (`apt-get update` once). Usage: bash docs/get_chromium.sh [DEST]   (default .chromium)
set -euo pipefail
DEST=$(realpath -m "${1:-.chromium}")
# found with `ldd chromium | grep 'not found'`, repeated until nothing was missing
PACKAGES="chromium chromium-common libopenh264-7 libdouble-conversion3 libharfbuzz-subset0 libpulse0 libflac12
          libopus0 libxnvctrl0 libminizip1 libopenjp2-7 libogg0 libsndfile1 libasyncns0 libvorbis0a libvorbisenc2
          libmpg123-0 libmp3lame0"
mkdir -p "$DEST/debs" "$DEST/root"
(cd "$DEST/debs" && apt-get download $PACKAGES)
for deb in "$DEST"/debs/*.deb; do dpkg -x "$deb" "$DEST/root"; done
LIBDIRS="$DEST/root/usr/lib/x86_64-linux-gnu:$DEST/root/usr/lib/x86_64-linux-gnu/pulseaudio:$DEST/root/usr/lib/chromium"
missing=$(LD_LIBRARY_PATH=$LIBDIRS ldd "$DEST/root/usr/lib/chromium/chromium" | awk '/not found/ {print $1}')
if [ -n "$missing" ]; then
  echo "still missing (find their packages with apt-file and add them to PACKAGES): $missing" >&2
  exit 1
fi
cat > "$DEST/chromium" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$LIBDIRS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$DEST/root/usr/lib/chromium/chromium" "\$@"
WRAP
chmod +x "$DEST/chromium"
"$DEST/chromium" --version
