#!/bin/sh
# rebalancerd postinst: configuration readable by the service's group only,
# the state directory its own; systemd told about the unit. The service is
# not started: edit /etc/rebalancerd/rebalancerd.yaml first.
set -e
chown root:rebalancerd /etc/rebalancerd /etc/rebalancerd/policies /etc/rebalancerd/holdings
chmod 0750 /etc/rebalancerd /etc/rebalancerd/policies /etc/rebalancerd/holdings
find /etc/rebalancerd -type f -name '*.yaml' -exec chown root:rebalancerd {} + -exec chmod 0640 {} +
install -d -m 0700 -o rebalancerd -g rebalancerd /var/lib/rebalancerd
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
