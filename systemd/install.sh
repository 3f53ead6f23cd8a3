#!/bin/sh
# Installs canvass as a systemd service without the Debian package: the
# binary, the unit, the config (never overwriting an existing one) and the
# credentials folder, with a new HMAC key (0600) if there is none.
#
#   cargo build --release
#   sudo systemd/install.sh [path/to/canvass]     (default: target/release/canvass)
#
# DESTDIR=/some/dir stages the files there instead (no group, no systemctl);
# the tests use that.
#
# Nothing secret is ever world-readable: the credentials folder is 0700, the
# key is written 0600 by `canvass keygen` under umask 077, and the IMAP/SMTP
# passwords are the operator's to put there (see systemd/README.md).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/canvass}
dest=${DESTDIR:-}
group=canvass-config
umask 022

if [ ! -x "$bin" ]; then
    echo "install.sh: no canvass binary at $bin (cargo build --release first)" >&2
    exit 1
fi

install -d -m 0755 "$dest/usr/bin" "$dest/lib/systemd/system" "$dest/etc/canvass" "$dest/usr/share/doc/canvass"
install -m 0755 "$bin" "$dest/usr/bin/canvass"
install -m 0644 "$here/systemd/canvass.service" "$dest/lib/systemd/system/canvass.service"
install -m 0644 "$here/systemd/README.md" "$dest/usr/share/doc/canvass/systemd.md"
install -m 0644 "$here/config/canvass.example.toml" "$dest/usr/share/doc/canvass/canvass.example.toml"

# The config is readable by root and the service's group only.
if [ -z "$dest" ] && ! getent group "$group" >/dev/null; then
    if command -v addgroup >/dev/null; then
        addgroup --system --quiet "$group"
    else
        groupadd --system "$group"
    fi
fi
if [ ! -e "$dest/etc/canvass/canvass.toml" ]; then
    install -m 0640 "$here/config/canvass.example.toml" "$dest/etc/canvass/canvass.toml"
    echo "installed the example config as $dest/etc/canvass/canvass.toml: edit it"
else
    echo "kept the existing $dest/etc/canvass/canvass.toml"
fi
if [ -z "$dest" ]; then
    chgrp "$group" /etc/canvass/canvass.toml
fi
if [ ! -e "$dest/etc/canvass/survey.da.toml" ]; then
    install -m 0644 "$here/config/survey.da.toml" "$dest/etc/canvass/survey.da.toml"
fi

# Secrets: root only; systemd copies them to the service (LoadCredential=).
install -d -m 0700 "$dest/etc/credstore"
install -d -m 0700 "$dest/etc/credstore/canvass"
if [ ! -e "$dest/etc/credstore/canvass/hmac.key" ]; then
    (umask 077 && "$dest/usr/bin/canvass" keygen --out "$dest/etc/credstore/canvass/hmac.key" >/dev/null)
    chmod 0600 "$dest/etc/credstore/canvass/hmac.key"
    echo "created a new HMAC key: $dest/etc/credstore/canvass/hmac.key (keep a copy: without it nobody can be de-duplicated)"
fi
for f in imap-password smtp-password; do
    if [ ! -e "$dest/etc/credstore/canvass/$f" ]; then
        echo "missing $dest/etc/credstore/canvass/$f: write it with  (umask 077; printf '%s' 'SECRET' > $dest/etc/credstore/canvass/$f)"
    fi
done

if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "then: CREDENTIALS_DIRECTORY=/etc/credstore/canvass canvass check-config --config /etc/canvass/canvass.toml && systemctl enable --now canvass"
