#!/bin/sh
# Bring up the software fax line (two iaxmodems back to back, efax or HylaFAX as the far
# end) and hold it until Ctrl-C. Needs root for the private network namespace.
#   scripts/fax-line.sh                      efax answers on modem B
#   scripts/fax-line.sh --far-end hylafax    HylaFAX faxgetty answers on modem B
#   scripts/fax-line.sh --far-end none       modem B left idle
# See docs/softline.md.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
[ -x "$python" ] || python=python3
cd "$root"
exec "$python" -m faxfleet.softline up "$@"
