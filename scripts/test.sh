#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# Everything the tests need on a fresh Debian or Ubuntu machine, then the tests.
#
# The browser tests (tests/test_report_browser.py) open the HTML report in headless
# Chromium through chromedriver, so Debian's chromium and chromium-driver are installed
# first when the machine lacks them (with sudo unless run as root). Then pagesim with its
# test extra, then pytest; arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "installing chromium and chromium-driver (apt-get) for the browser tests" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium chromium-driver >/dev/null
fi
python -m pip install --quiet -e '.[test]'
exec python -m pytest "$@"
