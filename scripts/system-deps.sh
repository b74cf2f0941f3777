#!/usr/bin/env bash
# System packages faxfleet needs: redis-server (the fleet's store and broker), a
# monospaced font for text pages, libtiff tools (an independent decoder for the tests),
# Ghostscript (the rendering benchmark's baseline), LibreOffice (Office documents), the
# software fax line (below), Chromium (the web console's browser tests drive it with
# Playwright), PostgreSQL (the accounting tests' own cluster) and python3-venv. Installed
# with apt-get when missing and we are root; otherwise we say what is missing.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need+=(fonts-dejavu-core)
command -v tiffinfo >/dev/null || need+=(libtiff-tools)
command -v gs >/dev/null || need+=(ghostscript)
# LibreOffice converts Office documents (.docx, .xlsx, .odt...) to PDF; headless builds only
# (about 100 MB of packages, 300 MB installed).
[ -e /usr/lib/libreoffice/program/libswlo.so ] || need+=(libreoffice-writer-nogui)
[ -e /usr/lib/libreoffice/program/libsclo.so ] || need+=(libreoffice-calc-nogui)
# The software fax line for the real-line tests: two iaxmodem Class 1 modems calling each
# other over loopback, with efax and HylaFAX as independent far ends; libspandsp as an
# in-memory T.30 peer; iproute2 for the private network namespace the modems run in.
command -v iaxmodem >/dev/null || need+=(iaxmodem)
command -v efax >/dev/null || need+=(efax)
command -v faxgetty >/dev/null || need+=(hylafax-server)
command -v sendfax >/dev/null || need+=(hylafax-client)
ls /usr/lib/*/libspandsp.so.2 >/dev/null 2>&1 || need+=(libspandsp2)
command -v ip >/dev/null || need+=(iproute2)
command -v chromium >/dev/null || need+=(chromium)
# PostgreSQL server binaries (initdb, pg_ctl): the call-accounting tests start a private
# cluster of their own; the fleet itself needs PostgreSQL only with FAXFLEET_DATABASE_URL.
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "faxfleet needs these Debian packages: ${need[*]}" >&2
    echo "run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
