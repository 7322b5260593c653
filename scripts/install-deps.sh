#!/bin/bash
# Installs the Debian packages the build host needs, if any are missing.
# Runs `apt-get update` once, and only when something must be installed.
set -euo pipefail

# command -> package that provides it
declare -A NEED=(
  [mkfs.erofs]=erofs-utils
  [fsck.erofs]=erofs-utils
  [mkfs.ext4]=e2fsprogs
  [debugfs]=e2fsprogs
  [depmod]=kmod
  [qemu-img]=qemu-utils
  [qemu-system-x86_64]=qemu-system-x86
  [veritysetup]=cryptsetup-bin
  [sgdisk]=gdisk
  [fsck.fat]=dosfstools
  [mkfs.vfat]=dosfstools
  [mkfs.xfs]=xfsprogs
  [mkswap]=util-linux
  [blkid]=util-linux
  [mdir]=mtools
  [cpio]=cpio
  [gpg]=gnupg
  [dpkg-deb]=dpkg
  [make]=make
  [mmdebstrap]=mmdebstrap
  [busybox]=busybox-static
  [ignition-validate]=ignition
  [systemd-analyze]=systemd
  [systemd-escape]=systemd
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [readelf]=binutils
  [openssl]=openssl
)
FILES=(/usr/share/OVMF/OVMF_CODE_4M.fd:ovmf /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring)

find_missing() {
  missing=()
  for cmd in "${!NEED[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
      missing+=("${NEED[$cmd]}")
    fi
  done
  for f in "${FILES[@]}"; do
    [ -e "${f%%:*}" ] || missing+=("${f##*:}")
  done
}
find_missing

# The tests read apt's verified InRelease files and fetch a test kernel by
# name, so the package lists must exist even when nothing is missing.
have_lists=false
for f in /var/lib/apt/lists/*_InRelease; do
  [ -e "$f" ] && have_lists=true && break
done

if [ ${#missing[@]} -eq 0 ]; then
  if ! $have_lists; then
    [ "$(id -u)" -eq 0 ] || { echo "install-deps: apt lists missing; run apt-get update as root" >&2; exit 1; }
    apt-get update -qq
  fi
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root to install packages (missing: ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# An install can remove a package that was there: a newer qemu-utils (from
# backports, say) that the suite's qemu-system-x86 cannot live with is
# removed in its favour. Install what went missing, from the same lists.
find_missing
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-deps: installing ${missing[*]} (removed by the first install)" >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
find_missing
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: still missing after installing: ${missing[*]}" >&2
  exit 1
fi
