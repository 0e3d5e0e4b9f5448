#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# The browser the tests need, on a fresh Debian or Ubuntu machine.
#
# The browser tests (tests/test_report_browser.py) open the HTML report in headless
# Chromium through chromedriver: Debian's chromium and chromium-driver are installed
# when the machine lacks them (with sudo unless run as root); otherwise nothing is done.
set -eu
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing chromium and chromium-driver (apt-get) for the browser tests" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    chromium chromium-driver >/dev/null
