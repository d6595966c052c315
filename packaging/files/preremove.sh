#!/bin/sh
# rebalancerd prerm: stop the service before its files go. The state in
# /var/lib/rebalancerd and the configuration stay.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop rebalancerd.service >/dev/null 2>&1 || true
fi
