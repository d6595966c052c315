#!/bin/sh
# rebalancerd preinst: the system user and group the service runs as, so
# that dpkg unpacks /etc/rebalancerd with group rebalancerd.
set -e
if ! getent group rebalancerd >/dev/null; then
	addgroup --system rebalancerd >/dev/null 2>&1 || groupadd --system rebalancerd
fi
if ! getent passwd rebalancerd >/dev/null; then
	adduser --system --ingroup rebalancerd --home /var/lib/rebalancerd --no-create-home \
		--shell /usr/sbin/nologin --gecos "rebalancerd daemon" rebalancerd >/dev/null 2>&1 ||
		useradd --system --gid rebalancerd --home-dir /var/lib/rebalancerd --no-create-home \
			--shell /usr/sbin/nologin --comment "rebalancerd daemon" rebalancerd
fi
