#!/bin/sh
# Install MBROLA and the MBROLA voices nextvox may use for its "train" singing library.
#
# mbrola is in Debian contrib and its voices in non-free. This script never touches the
# system's apt configuration: it writes its own sources file (the system's Debian mirror with
# "main contrib non-free") and its own package lists under $NEXTVOX_APT_DIR, and points
# apt-get at them with -o options.
#
# Only the voices listed below are installed. The list is an allow-list on purpose: some
# MBROLA voices are held out of the project for evaluation and must never be added here.
# MBROLA voices are licensed for non-commercial use only.
set -eu

NEXTVOX_APT_DIR=${NEXTVOX_APT_DIR:-/var/lib/nextvox-apt}

VOICES="af1 br1 br3 ca1 ca2 de1 de2 de3 de4 de5 de6 de7 de8 ee1 en1 es1 es2 es3 es4 fr1 fr2 fr3 fr4 fr5 fr6 fr7
gr1 gr2 hu1 ic1 id1 ir1 la1 lt1 lt2 mx1 mx2 nl1 nl2 nl3 pl1 pt1 ro1 sw1 sw2 tr1 tr2 us1 us2 us3 vz1"

# The system's Debian mirror, e.g. http://deb.debian.org/debian: the first "URIs:" (deb822) or
# "deb" line (one-line format) that is not a comment and not the security archive.
MIRROR=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]*' | grep -v security | head -n 1 || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=$(. /etc/os-release && echo "$VERSION_CODENAME")

mkdir -p "$NEXTVOX_APT_DIR/lists/partial"
SOURCES="$NEXTVOX_APT_DIR/nextvox-contrib-non-free.list"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main contrib non-free" > "$SOURCES"

APT_OPTIONS="-o Dir::Etc::SourceList=$SOURCES -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$NEXTVOX_APT_DIR/lists"

# shellcheck disable=SC2086  # the options are meant to split into words
apt-get $APT_OPTIONS update
if ! ls "$NEXTVOX_APT_DIR"/lists/*_Packages* >/dev/null 2>&1; then
    echo "install-mbrola: could not download the package lists from $MIRROR" >&2
    exit 1
fi

PACKAGES="mbrola espeak-ng"
for voice in $VOICES; do
    # Voices that this Debian release does not ship are skipped rather than failing the install.
    # shellcheck disable=SC2086
    if apt-cache $APT_OPTIONS show "mbrola-$voice" >/dev/null 2>&1; then
        PACKAGES="$PACKAGES mbrola-$voice"
    else
        echo "mbrola-$voice: not in $SUITE, skipped" >&2
    fi
done
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y --no-install-recommends $PACKAGES
