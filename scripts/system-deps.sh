#!/usr/bin/env bash
# System packages faxfleet needs: redis-server (the fleet's store and broker), a
# monospaced font for text pages, libtiff tools (an independent decoder for the tests),
# Ghostscript (the rendering benchmark's baseline), LibreOffice (Office documents) and
# python3-venv. Installed with apt-get when missing and we are root; otherwise we say what
# is missing.
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
